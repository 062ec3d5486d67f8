//! Hints: what a person can do about an error the API answered. The DMS code and message are
//! printed as the server sent them; the hint is the CLI's own line under them, chosen from one
//! table by the code (and, where one code covers several cases, a fragment of the message and
//! the command that got it). Nothing here changes what is on the wire.

use super::Failure;

/// The command an error came from, where the same code means different things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Any,
    Reschedule,
    ScheduledDelete,
    TaskDelete,
    /// An operation on an instance (configs, autotopic, resize, reassign, upgrade, restart).
    Operation,
}

impl Op {
    /// The name the console's copy of the table uses (`/console/hints.json`).
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Any => "any",
            Op::Reschedule => "reschedule",
            Op::ScheduledDelete => "scheduled-delete",
            Op::TaskDelete => "task-delete",
            Op::Operation => "operation",
        }
    }
}

/// One hint: for `code`, when the message contains `message` (empty: any), for `op`
/// (`Op::Any`: any command). `{project}`, `{instance}`, `{task}` and `{access_key}` are filled in.
pub struct Hint {
    pub code: &'static str,
    pub message: &'static str,
    pub op: Op,
    pub text: &'static str,
}

/// The table, first match wins.
pub const HINTS: &[Hint] = &[
    Hint {
        code: "APIGW.0302",
        message: "",
        op: Op::Any,
        text: "the key is not one of project {project} (the project in use, from --project-id, \
               HUAWEICLOUD_SDK_PROJECT_ID or the profile); use the project the key was made for",
    },
    Hint {
        code: "APIGW.0301",
        message: "token expires",
        op: Op::Any,
        text: "the token has expired (tokens last 24 hours): run `kafka-tasks token create` for a new one",
    },
    Hint {
        code: "APIGW.0301",
        message: "the token is invalid",
        op: Op::Any,
        text: "the token is not one this server issued (or its master key changed): run `kafka-tasks token create`",
    },
    Hint {
        code: "APIGW.0301",
        message: "verify aksk signature fail",
        op: Op::Any,
        text: "the server does not know the access key {access_key}, or the secret key is not its own (it does \
               not say which); check both, or write them again with `kafka-tasks configure`",
    },
    Hint {
        code: "APIGW.0301",
        message: "request has expired",
        op: Op::Any,
        text: "this machine's clock is more than 15 minutes off the server's: set it right (NTP)",
    },
    Hint {
        code: "DMS.00400142",
        message: "",
        op: Op::Reschedule,
        text: "the new time must be ahead of the server's clock: e.g. `--at +1h`",
    },
    Hint {
        code: "DMS.00400017",
        message: "",
        op: Op::ScheduledDelete,
        text: "a scheduled task that still waits is not deleted: cancel it first \
               (`kafka-tasks scheduled cancel -i {instance} {task}`), then delete it",
    },
    Hint {
        code: "DMS.00400017",
        message: "",
        op: Op::TaskDelete,
        text: "a task is deleted once it has ended: wait for it (`kafka-tasks tasks wait -i {instance} {task}`)",
    },
    Hint {
        code: "DMS.00400026",
        message: "already runs the latest kernel version",
        op: Op::Any,
        text: "there is no newer kernel build to upgrade to (`kafka-tasks upgrade -i {instance} --check`)",
    },
    Hint {
        code: "DMS.00403003",
        message: "",
        op: Op::Any,
        text: "this key's role may not do this (readonly keys read, operators run operations, admins \
               create and delete instances); ask an admin for a key with the role",
    },
    Hint {
        code: "DMS.00404022",
        message: "",
        op: Op::Any,
        text: "no instance {instance} in project {project}: `kafka-tasks instances list` shows the project's",
    },
];

/// What a hint is filled with.
#[derive(Debug, Default, Clone)]
pub struct Facts<'a> {
    pub project: &'a str,
    pub instance: &'a str,
    pub task: &'a str,
    pub access_key: &'a str,
}

/// The hint for an API error, if the table has one.
pub fn hint(code: &str, message: &str, op: Op, facts: &Facts<'_>) -> Option<String> {
    let h = HINTS.iter().find(|h| h.code == code && message.contains(h.message) && (h.op == Op::Any || h.op == op))?;
    Some(
        h.text
            .replace("{project}", facts.project)
            .replace("{instance}", facts.instance)
            .replace("{task}", facts.task)
            .replace("{access_key}", facts.access_key),
    )
}

/// What the CLI can honestly tell about a key that the server refused without saying why:
/// only its shape, against the shape of the keys this server makes (20 capital letters and
/// digits; 40 letters and digits).
pub fn key_shape(access_key: &str, secret_key: &str) -> Option<String> {
    let ak_ok = access_key.len() == 20 && access_key.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    let sk_ok = secret_key.len() == 40 && secret_key.bytes().all(|b| b.is_ascii_alphanumeric());
    match (ak_ok, sk_ok) {
        (false, _) => Some(format!(
            "the access key has {} characters and is not 20 capital letters and digits as this server's keys are: \
             it looks mistyped",
            access_key.chars().count()
        )),
        (true, false) => Some(format!(
            "the secret key has {} characters and is not 40 letters and digits as this server's are: it looks \
             mistyped (or is another key's)",
            secret_key.chars().count()
        )),
        (true, true) => None,
    }
}

/// `f` with its hint (API errors only).
pub fn with_hint(f: Failure, op: Op, facts: &Facts<'_>) -> Failure {
    match f {
        Failure::Api { status, code, message, request_id, hint: None } => {
            let hint = hint(&code, &message, op, facts);
            Failure::Api { status, code, message, request_id, hint }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts<'static> {
        Facts { project: "p1", instance: "i1", task: "t1", access_key: "AK1" }
    }

    #[test]
    fn every_code_of_the_table_gives_its_hint_and_only_for_its_command() {
        let f = facts();
        let h = |code, msg, op| hint(code, msg, op, &f).unwrap_or_default();
        assert!(h("APIGW.0302", "The IAM user is not authorized to access the API.", Op::Any).contains("project p1"));
        assert!(
            h("APIGW.0301", "Incorrect IAM authentication information: token expires", Op::Any)
                .contains("kafka-tasks token create")
        );
        let aksk = h("APIGW.0301", "Incorrect IAM authentication information: verify aksk signature fail", Op::Any);
        assert!(aksk.contains("AK1") && aksk.contains("does not say which"), "{aksk}");
        assert!(h("DMS.00400142", "Timestamp is invalid.", Op::Reschedule).contains("ahead"));
        assert_eq!(hint("DMS.00400142", "Timestamp is invalid.", Op::Any, &f), None, "only for a reschedule");
        assert!(h("DMS.00400017", "x", Op::ScheduledDelete).contains("scheduled cancel -i i1 t1"));
        assert!(h("DMS.00400017", "x", Op::TaskDelete).contains("tasks wait -i i1 t1"));
        assert!(h("DMS.00404022", "x", Op::Any).contains("no instance i1 in project p1"));
        assert_eq!(hint("DMS.00400062", "Invalid limit parameter", Op::Any, &f), None);
        // Every entry is reachable: its own code and message find it.
        for entry in HINTS {
            let op = if entry.op == Op::Any { Op::Operation } else { entry.op };
            assert!(hint(entry.code, entry.message, op, &f).is_some(), "{} is never chosen", entry.code);
        }
    }

    #[test]
    fn a_key_s_shape_is_told_only_when_it_cannot_be_one_of_this_server_s() {
        let ak = "ABCDEFGHIJ0123456789";
        let sk = "abcdefghijABCDEFGHIJ0123456789abcdefghij";
        assert_eq!(key_shape(ak, sk), None);
        assert!(key_shape("abc", sk).is_some_and(|m| m.contains("access key has 3 characters")));
        assert!(key_shape(ak, &sk[..39]).is_some_and(|m| m.contains("secret key has 39 characters")));
    }
}
