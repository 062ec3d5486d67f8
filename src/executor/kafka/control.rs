//! The binding's broker-control program: what the Kafka protocol cannot do to a cluster
//! (restart a broker, change its static config, start it on another Kafka release) is done by a
//! program the operator provides, run under the same supervision as an `exec` executor
//! ([`crate::executor::exec::supervise`]: own process group, cleared environment, the watcher
//! that kills the group once the server is gone, `KT_ATTEMPT` and a fresh `KT_RUN_TOKEN`).
//!
//! The interface (`examples/broker-control/README.md` says the same for program authors):
//!
//! | argv                                    | does                                                   |
//! |-----------------------------------------|--------------------------------------------------------|
//! | `status BROKER`                         | prints `running INCARNATION` or `stopped` as its last line |
//! | `restart BROKER`                        | stops the broker's process (if running) and starts it  |
//! | `set-static-config BROKER NAME=VALUE…`  | writes the values into the broker's config; no restart |
//! | `upgrade BROKER KAFKA_VERSION`          | restarts the broker on that Apache Kafka release        |
//! | `add-broker BROKER`                     | starts a new broker with that id, joining the cluster   |
//! | `set-storage BROKER GB`                 | gives the broker that much storage                      |
//!
//! `INCARNATION` names the broker's current process (a pid, a unit's start time, a pod's uid):
//! it changes exactly when the broker restarts, so a later attempt can tell whether a restart it
//! had issued happened. Every verb must be safe to repeat. Exit status 0 is success; anything
//! else fails the step with the program's last stderr as the reason. The environment holds
//! `KT_BOOTSTRAP` (the binding's servers), `KT_BROKER`, `KT_TASK_ID`, `KT_INSTANCE_ID`,
//! `KT_PROJECT_ID`, `KT_OPERATION`, `KT_STEP`, `KT_ATTEMPT` and `KT_RUN_TOKEN`, and nothing of
//! the server's but `PATH`, `HOME`, `LANG`, `LC_ALL`, `TZ` and `TMPDIR`; stdin is empty.

use std::path::Path;

use tokio::sync::{mpsc, watch};

use super::Spec;
use crate::executor::exec::{Invocation, supervise};
use crate::executor::{Outcome, StepRun};

/// What `status` said of a broker's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Status {
    Running(String),
    Stopped,
}

/// The broker-control program of a binding, for one step.
pub(super) struct Control<'a> {
    spec: &'a Spec,
    req: &'a StepRun<'a>,
    program: &'a Path,
}

impl<'a> Control<'a> {
    /// The binding's program, allowed by the operator now (a flag may have changed since binding).
    pub(super) fn of(spec: &'a Spec, req: &'a StepRun<'a>) -> Result<Control<'a>, String> {
        let program = spec.stored.binding.broker_control.as_deref().ok_or_else(|| {
            format!(
                "{} on a bound cluster needs the binding's broker-control program (`broker_control`), which \
                 restarts brokers; the binding names none",
                req.operation
            )
        })?;
        spec.policy.check_control(program)?;
        Ok(Control { spec, req, program })
    }

    pub(super) async fn status(&self, broker: i32) -> Result<Status, String> {
        let out = self.run(broker, vec!["status".into(), broker.to_string()]).await?;
        parse_status(&out).ok_or_else(|| {
            format!(
                "the broker-control program's `status {broker}` printed neither `running INCARNATION` nor `stopped` \
                 as its last line"
            )
        })
    }

    pub(super) async fn restart(&self, broker: i32) -> Result<String, String> {
        self.run(broker, vec!["restart".into(), broker.to_string()]).await
    }

    pub(super) async fn set_static_config(&self, broker: i32, values: &[(String, String)]) -> Result<String, String> {
        let mut args = vec!["set-static-config".to_owned(), broker.to_string()];
        args.extend(values.iter().map(|(n, v)| format!("{n}={v}")));
        self.run(broker, args).await
    }

    pub(super) async fn upgrade(&self, broker: i32, version: &str) -> Result<String, String> {
        self.run(broker, vec!["upgrade".into(), broker.to_string(), version.to_owned()]).await
    }

    pub(super) async fn add_broker(&self, broker: i32) -> Result<String, String> {
        self.run(broker, vec!["add-broker".into(), broker.to_string()]).await
    }

    pub(super) async fn set_storage(&self, broker: i32, gb: u64) -> Result<String, String> {
        self.run(broker, vec!["set-storage".into(), broker.to_string(), gb.to_string()]).await
    }

    /// Runs the program with `args`; its output's tail on success, the reason on failure.
    async fn run(&self, broker: i32, args: Vec<String>) -> Result<String, String> {
        // Checked before every run: the program may have been swapped for a link since.
        self.spec.policy.check_control(self.program)?;
        let req = self.req;
        let env = vec![
            ("KT_BOOTSTRAP".to_owned(), self.spec.stored.binding.bootstrap.join(",")),
            ("KT_BROKER".to_owned(), broker.to_string()),
            ("KT_TASK_ID".to_owned(), req.task.id.as_str().to_owned()),
            ("KT_INSTANCE_ID".to_owned(), req.task.instance_id.as_str().to_owned()),
            ("KT_PROJECT_ID".to_owned(), req.task.project_id.as_str().to_owned()),
            ("KT_OPERATION".to_owned(), req.operation.to_owned()),
            ("KT_STEP".to_owned(), req.step_name.to_owned()),
        ];
        let invocation = Invocation {
            program: self.program,
            args: &args,
            env,
            working_dir: None,
            stdin: Vec::new(),
            attempt: req.attempt,
        };
        // Progress lines of the program are not the step's (the rolling restart reports its own);
        // they are read and dropped so that the program never blocks on a full pipe.
        let (events, mut drop_events) = mpsc::channel(16);
        let drain = tokio::spawn(async move { while drop_events.recv().await.is_some() {} });
        // Stopping is the caller's: the run is dropped, and with it the program's group.
        let (_never, stop) = watch::channel(false);
        let outcome = supervise(invocation, req.lease, req.kill_grace, events, stop).await;
        drain.abort();
        let what = args.iter().take(2).cloned().collect::<Vec<_>>().join(" ");
        match outcome {
            Outcome::Done { tail } => {
                tracing::info!(command = %what, "broker-control program done");
                Ok(tail)
            }
            Outcome::Failed { reason, .. } => Err(format!("the broker-control program's `{what}` failed: {reason}")),
            Outcome::Stopped { .. } => Err(format!("the broker-control program's `{what}` was stopped")),
        }
    }
}

/// The last `running INCARNATION` or `stopped` line of a `status` run's output.
fn parse_status(out: &str) -> Option<Status> {
    out.lines().rev().map(str::trim).find_map(|l| {
        if l == "stopped" {
            return Some(Status::Stopped);
        }
        let id = l.strip_prefix("running ")?.trim();
        (!id.is_empty() && !id.contains(char::is_whitespace)).then(|| Status::Running(crate::executor::cut(id, 128)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_the_last_status_line() {
        assert_eq!(parse_status("noise\nrunning 4242\n"), Some(Status::Running("4242".into())));
        assert_eq!(parse_status("running 1\nlog line\nstopped\nmore log\n"), Some(Status::Stopped));
        assert_eq!(parse_status("running \n"), None);
        assert_eq!(parse_status("running a b\n"), None);
        assert_eq!(parse_status(""), None);
    }
}
