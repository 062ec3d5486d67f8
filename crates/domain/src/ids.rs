//! Identifiers as the DMS API formats them, and Kafka topic names as Kafka allows them. Each
//! parses from a string and rejects anything else.

use std::fmt;
use std::str::FromStr;

/// A 32-character hexadecimal project id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectId(String);

/// An instance id: a UUID with dashes, kept in lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(String);

/// A task, scheduled task or job id: 32 lowercase hexadecimal characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(String);

/// A Kafka topic name, by Kafka's own rule: 1 to 249 characters of `[a-zA-Z0-9._-]`, and
/// neither `.` nor `..`. Executors hand topics to Kafka's tools and split their output on
/// whitespace; a name outside the rule (a tab, a newline) could become several topics there.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidId;

fn is_hex32(s: &str, allow_upper: bool) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || (allow_upper && (b'A'..=b'F').contains(&b)))
}

impl FromStr for ProjectId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        // Huawei project ids are lowercase in practice; accept uppercase and normalise.
        if is_hex32(s, true) { Ok(ProjectId(s.to_ascii_lowercase())) } else { Err(InvalidId) }
    }
}

impl FromStr for InstanceId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        if s.len() != 36 {
            return Err(InvalidId);
        }
        uuid::Uuid::try_parse(s).map(|u| InstanceId(u.hyphenated().to_string())).map_err(|_| InvalidId)
    }
}

impl FromStr for TaskId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        if is_hex32(s, false) { Ok(TaskId(s.to_owned())) } else { Err(InvalidId) }
    }
}

impl FromStr for TopicName {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        let legal = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
        if (1..=249).contains(&s.len()) && s != "." && s != ".." && s.bytes().all(legal) {
            Ok(TopicName(s.to_owned()))
        } else {
            Err(InvalidId)
        }
    }
}

impl InstanceId {
    pub fn generate() -> Self {
        InstanceId(uuid::Uuid::new_v4().hyphenated().to_string())
    }
}

impl TaskId {
    pub fn generate() -> Self {
        TaskId(uuid::Uuid::new_v4().simple().to_string())
    }
}

impl ProjectId {
    pub fn generate() -> Self {
        ProjectId(uuid::Uuid::new_v4().simple().to_string())
    }
}

macro_rules! string_id {
    ($($t:ty),*) => {$(
        impl $t {
            pub fn as_str(&self) -> &str {
                &self.0
            }
            /// Wraps a value read back from our own store, which only ever holds validated ids.
            pub fn from_trusted(s: String) -> Self {
                Self(s)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(|_| serde::de::Error::custom(concat!("invalid ", stringify!($t))))
            }
        }
    )*};
}
string_id!(ProjectId, InstanceId, TaskId, TopicName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_ids_are_32_hex_characters() {
        assert!("0123456789abcdef0123456789abcdef".parse::<ProjectId>().is_ok());
        assert_eq!(
            "0123456789ABCDEF0123456789ABCDEF".parse::<ProjectId>().map(|p| p.0),
            Ok("0123456789abcdef0123456789abcdef".to_owned())
        );
        assert!("0123456789abcdef0123456789abcde".parse::<ProjectId>().is_err());
        assert!("0123456789abcdef0123456789abcdeg".parse::<ProjectId>().is_err());
        assert!("".parse::<ProjectId>().is_err());
    }

    #[test]
    fn instance_ids_are_dashed_uuids() {
        assert!("11111111-2222-3333-4444-555555555555".parse::<InstanceId>().is_ok());
        assert!("11111111222233334444555555555555".parse::<InstanceId>().is_err());
        assert!("11111111-2222-3333-4444-55555555555x".parse::<InstanceId>().is_err());
        assert!("{11111111-2222-3333-4444-555555555555}".parse::<InstanceId>().is_err());
    }

    #[test]
    fn task_ids_are_lowercase_hex() {
        assert!("8abfa7b372160bfd0172165864064079".parse::<TaskId>().is_ok());
        assert!("8ABFA7B372160BFD0172165864064079".parse::<TaskId>().is_err());
        assert!("8abfa7b372160bfd017216586406407".parse::<TaskId>().is_err());
        assert_eq!(TaskId::generate().as_str().len(), 32);
    }

    #[test]
    fn topic_names_follow_kafkas_rule() {
        let longest = "a".repeat(249);
        for good in ["orders", "orders.v2", "__consumer_offsets", "my-topic_1", "...", "-", "A9", &longest] {
            assert!(good.parse::<TopicName>().is_ok(), "{good:?} refused");
        }
        let too_long = "a".repeat(250);
        for bad in ["", ".", "..", "a b", "a\tb", "a\nb", "a\rb", "a/b", "a:b", "tópico", "a\u{202e}b", &too_long] {
            assert!(bad.parse::<TopicName>().is_err(), "{bad:?} accepted");
        }
    }
}
