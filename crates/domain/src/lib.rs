//! The domain: identifiers, times, task states and the operations that create tasks.
//! Types here validate once, when they are parsed, and cannot hold a bad value.

pub mod admission;
pub mod brokers;
pub mod clock;
pub mod cluster;
pub mod deletion;
pub mod events;
pub mod ids;
pub mod instance;
pub mod kernel;
pub mod net;
pub mod operation;
pub mod placement;
pub mod rescheduling;
pub mod retention;
pub mod submission;
pub mod task;
pub mod time;
pub mod transition;
pub mod zones;

pub use clock::Clock;
pub use ids::{InstanceId, ProjectId, TaskId, TopicName};
pub use task::{Step, StepFailure, StepStatus, TaskRecord, TaskStatus};
pub use time::{CompactTime, Timestamp, now_ms};

/// The user an audit event written by the engine (not by a request) names.
pub const ENGINE_USER: &str = "kafka-tasks-engine";

/// Who a request is handled for. Produced by the auth layer, consumed by handlers and the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub project_id: ProjectId,
    pub user_id: String,
    pub user_name: String,
    pub access_key: Option<String>,
    pub role: Role,
    /// How the caller proved who they are.
    pub method: AuthMethod,
}

/// How a request was authenticated. Some actions (minting a token) need the stronger proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// An `SDK-HMAC-SHA256`/`SDK-HMAC-SM3` signature made with the secret key.
    AkSk,
    /// An `X-Auth-Token` minted earlier.
    Token,
}

/// What a credential may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Readonly,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Readonly => "readonly",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "readonly" => Ok(Role::Readonly),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role {other:?} (expected admin, operator or readonly)")),
        }
    }
}

/// The IAM actions of the DMS API, each with the least role that may perform it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    GetBackgroundTask,
    DeleteBackgroundTask,
    ListScheduledTasks,
    ModifyScheduledTask,
    DeleteScheduledTask,
    GetInstance,
    ModifyInstance,
    CreateInstance,
    DeleteInstance,
    /// Progress needs no IAM action in DMS; any authenticated caller of the project may read it.
    Unrestricted,
    /// `POST /v3/auth/tokens` for one's own project.
    CreateToken,
    /// Reading what an executor reported for a task: its output and failure reason may hold
    /// secrets, so operators and admins only.
    GetTaskOutput,
    /// Reading the project's retention policy (an extension).
    GetRetention,
    /// Setting or resetting it.
    SetRetention,
    /// Reading which Kafka cluster an instance is bound to (an extension: connected mode).
    GetCluster,
    /// Binding an instance to a Kafka cluster, or unbinding it.
    BindCluster,
    /// Test control (`serve --test-control`): fault rules, the clock, reset.
    TestControl,
}

impl Action {
    pub fn iam_name(self) -> &'static str {
        match self {
            Action::GetBackgroundTask => "dms:instance:getBackgroundTask",
            Action::DeleteBackgroundTask => "dms:instance:deleteBackgroundTask",
            Action::ListScheduledTasks => "dms:instance:listScheduledTasks",
            Action::ModifyScheduledTask => "dms:instance:modifyScheduledTask",
            Action::DeleteScheduledTask => "dms:instance:deleteScheduledTask",
            Action::GetInstance => "dms:instance:get",
            Action::ModifyInstance => "dms:instance:modify",
            Action::CreateInstance => "dms:instance:create",
            Action::DeleteInstance => "dms:instance:delete",
            Action::Unrestricted => "dms:instance:getBackgroundTaskProgress",
            Action::CreateToken => "iam:tokens:create",
            Action::GetTaskOutput => "kafka-tasks:instance:getTaskOutput",
            Action::GetRetention => "kafka-tasks:retention:get",
            Action::SetRetention => "kafka-tasks:retention:set",
            Action::GetCluster => "kafka-tasks:instance:getCluster",
            Action::BindCluster => "kafka-tasks:instance:bindCluster",
            Action::TestControl => "kafka-tasks:testControl:change",
        }
    }

    pub fn required_role(self) -> Role {
        match self {
            Action::GetBackgroundTask
            | Action::ListScheduledTasks
            | Action::GetInstance
            | Action::Unrestricted
            | Action::CreateToken => Role::Readonly,
            Action::DeleteBackgroundTask
            | Action::ModifyScheduledTask
            | Action::DeleteScheduledTask
            | Action::ModifyInstance
            | Action::GetTaskOutput => Role::Operator,
            Action::CreateInstance
            | Action::DeleteInstance
            | Action::GetRetention
            | Action::SetRetention
            | Action::GetCluster
            | Action::BindCluster
            | Action::TestControl => Role::Admin,
        }
    }
}

/// Input the domain refuses. The HTTP layer maps each to its DMS error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// A named parameter has a bad value (`DMS.00400062`).
    #[error("invalid {0} parameter")]
    Param(&'static str),
    /// A time value is malformed or out of range (`DMS.00400142`).
    #[error("invalid timestamp")]
    Timestamp,
    /// The body is not the JSON the operation takes (`DMS.00400800`).
    #[error("invalid request body")]
    Body,
    /// The instance's state does not allow the operation (`DMS.00400026`).
    #[error("operation not allowed in the instance's state")]
    InstanceState,
    /// A kernel upgrade of an instance already on its newest kernel build (`DMS.00400026`).
    #[error("the instance already runs the latest kernel")]
    AlreadyLatest,
}
