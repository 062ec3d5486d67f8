//! Admission: whether a submitted operation may be stored on its instance as the instance is
//! inside the storing transaction. An immediate task takes the instance's one-operation lock;
//! a scheduled one meets the same rule when it fires ([`super::transition::begin`]).

use super::instance::Instance;
use super::submission::{NewTask, TaskBuilder};
use super::{Invalid, ProjectId};

/// Why a submission is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubmitError {
    #[error("no such instance")]
    NoInstance,
    #[error("instance busy or not in a state for the operation")]
    Busy,
    #[error(transparent)]
    Invalid(#[from] Invalid),
}

/// Admits a new task on its instance: an immediate task takes the instance's one-operation lock,
/// refused when it is held or the operation does not apply to the instance as it is (the rule a
/// scheduled task meets again when it fires). Returns whether the instance changed.
pub fn admit(inst: &mut Instance, task: &NewTask) -> Result<bool, SubmitError> {
    if task.record.schedule_at.is_some() {
        return Ok(false);
    }
    if inst.busy_task.is_some() || task.operation.still_applies(inst).is_err() {
        return Err(SubmitError::Busy);
    }
    inst.busy_task = Some(task.record.id.clone());
    Ok(true)
}

/// A submission as a store sees it: given the instance it read (locked) in project `project`,
/// builds the task and admits it. `Ok` holds the task to insert and, when the instance changed
/// (took the lock), the instance to write back.
pub fn submission(
    inst: Option<Instance>,
    project: &ProjectId,
    build: &TaskBuilder,
) -> Result<(NewTask, Option<Instance>), SubmitError> {
    let Some(mut inst) = inst.filter(|inst| inst.project_id == *project) else {
        return Err(SubmitError::NoInstance);
    };
    let task = build.build(&inst)?;
    let changed = admit(&mut inst, &task)?;
    Ok((task, changed.then_some(inst)))
}

/// An instance change (UpdateInstance) as a store sees it: given the instance it read (locked)
/// in project `project`, applies `change`; `Ok` holds the instance to write back.
pub fn modification(
    inst: Option<Instance>,
    project: &ProjectId,
    change: impl FnOnce(&mut Instance) -> Result<(), Invalid>,
) -> Result<Instance, SubmitError> {
    let Some(mut inst) = inst.filter(|inst| inst.project_id == *project) else {
        return Err(SubmitError::NoInstance);
    };
    change(&mut inst)?;
    Ok(inst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::{InstanceStatus, NewInstance};
    use crate::operation::Operation;
    use crate::{Identity, Role};

    fn instance(status: InstanceStatus) -> Instance {
        let mut inst = Instance::create(ProjectId::generate(), &NewInstance::example(), "", "", 0);
        inst.status = status;
        inst
    }

    fn who(p: &ProjectId) -> Identity {
        Identity {
            project_id: p.clone(),
            user_id: "u".into(),
            user_name: "n".into(),
            access_key: None,
            role: Role::Admin,
            method: crate::AuthMethod::AkSk,
        }
    }

    fn restart(inst: &Instance, schedule_at: Option<i64>) -> TaskBuilder {
        TaskBuilder::new(&who(&inst.project_id), 10, schedule_at, 1.0, |_| Ok(Operation::Restart))
    }

    #[test]
    fn an_immediate_task_takes_the_instance_lock() {
        let inst = instance(InstanceStatus::Running);
        let p = inst.project_id.clone();
        let (task, changed) = submission(Some(inst.clone()), &p, &restart(&inst, None)).expect("admitted");
        assert_eq!(changed.and_then(|i| i.busy_task), Some(task.record.id));
    }

    #[test]
    fn a_held_lock_refuses_an_immediate_task_but_not_a_scheduled_one() {
        let mut inst = instance(InstanceStatus::Running);
        inst.busy_task = Some(crate::TaskId::generate());
        let p = inst.project_id.clone();
        assert_eq!(submission(Some(inst.clone()), &p, &restart(&inst, None)).err(), Some(SubmitError::Busy));
        let (_, changed) = submission(Some(inst.clone()), &p, &restart(&inst, Some(99))).expect("scheduled");
        assert!(changed.is_none(), "a scheduled task leaves the instance as it is");
    }

    #[test]
    fn an_operation_the_instance_does_not_allow_is_busy() {
        let inst = instance(InstanceStatus::Creating);
        let p = inst.project_id.clone();
        assert_eq!(submission(Some(inst.clone()), &p, &restart(&inst, None)).err(), Some(SubmitError::Busy));
    }

    #[test]
    fn another_projects_instance_is_no_instance() {
        let inst = instance(InstanceStatus::Running);
        let other = ProjectId::generate();
        assert_eq!(submission(Some(inst.clone()), &other, &restart(&inst, None)).err(), Some(SubmitError::NoInstance));
        assert_eq!(submission(None, &other, &restart(&inst, None)).err(), Some(SubmitError::NoInstance));
        assert_eq!(modification(Some(inst), &other, |_| Ok(())).err(), Some(SubmitError::NoInstance));
    }

    #[test]
    fn a_builder_builds_again_from_the_instance_it_is_given() {
        // A store may run its transaction twice: each build is made from that run's instance.
        let running = instance(InstanceStatus::Running);
        let p = running.project_id.clone();
        let build = TaskBuilder::new(&who(&p), 10, None, 1.0, |inst: &Instance| match inst.status {
            InstanceStatus::Running => Ok(Operation::Restart),
            _ => Err(Invalid::Body),
        });
        let (one, _) = submission(Some(running.clone()), &p, &build).expect("admitted");
        let (two, changed) = submission(Some(running.clone()), &p, &build).expect("admitted again");
        assert_ne!(one.record.id, two.record.id, "each build is a task of its own");
        assert_eq!(changed.and_then(|i| i.busy_task), Some(two.record.id.clone()));
        assert_eq!(one.record, crate::TaskRecord { id: one.record.id.clone(), ..two.record });
        let creating = Instance { status: InstanceStatus::Creating, ..running.clone() };
        assert_eq!(submission(Some(creating), &p, &build).err(), Some(SubmitError::Invalid(Invalid::Body)));
        // A task built beforehand is the same task each time.
        let ready = TaskBuilder::ready(one.clone());
        let record = || submission(Some(running.clone()), &p, &ready).expect("admitted").0.record;
        assert_eq!((record(), record()), (one.record.clone(), one.record));
    }

    #[test]
    fn a_refused_build_or_change_is_invalid() {
        let inst = instance(InstanceStatus::Running);
        let p = inst.project_id.clone();
        let build = TaskBuilder::new(&who(&p), 10, None, 1.0, |_| Err(Invalid::Body));
        assert_eq!(submission(Some(inst.clone()), &p, &build).err(), Some(SubmitError::Invalid(Invalid::Body)));
        assert_eq!(
            modification(Some(inst), &p, |_| Err(Invalid::Body)).err(),
            Some(SubmitError::Invalid(Invalid::Body))
        );
    }
}
