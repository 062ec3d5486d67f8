//! The domain's rules for instances and operations, driven as the handlers drive them: with
//! bodies read through this crate's types (so these tests live here, above the domain).

mod instance {
    use kafka_tasks_domain::instance::*;
    use kafka_tasks_domain::{Invalid, ProjectId, TaskId};
    use serde_json::Value;

    use crate::from_value;
    use crate::instance::{CreateInstanceBody, InstanceJson, UpdateInstanceBody};

    /// A create request body read through the wire.
    fn new_instance(body: Value) -> Result<NewInstance, Invalid> {
        from_value::<CreateInstanceBody>(body).and_then(NewInstance::try_from)
    }

    /// An UpdateInstance body read through the wire.
    fn update(body: Value) -> Result<InstanceUpdate, Invalid> {
        match body {
            Value::Object(_) => {
                from_value::<UpdateInstanceBody>(body).map(UpdateRequest::from).and_then(InstanceUpdate::validate)
            }
            _ => Err(Invalid::Body),
        }
    }

    /// The instance as ShowInstance answers it (the wire layer's type).
    fn shown(inst: &Instance) -> Value {
        serde_json::to_value(InstanceJson::from(inst)).unwrap_or(Value::Null)
    }
    use serde_json::json;

    #[test]
    fn an_instance_status_keeps_its_dms_name_on_the_wire_and_in_the_stored_document() {
        use InstanceStatus::*;
        for s in [Creating, CreateFailed, Running, Restarting, Extending, Upgrading, Deleting] {
            assert_eq!(serde_json::to_value(s).ok(), Some(json!(s.as_str())));
            assert_eq!(serde_json::from_value::<InstanceStatus>(json!(s.as_str())).ok(), Some(s));
        }
        assert!(serde_json::from_value::<InstanceStatus>(json!("running")).is_err());
    }

    fn body() -> Value {
        json!({"name": "kafka-1", "engine_version": "2.7", "broker_num": 3, "storage_space": 300, "product_id": "p"})
    }

    #[test]
    fn only_kept_fields_survive_and_passwords_never_do() {
        let mut b = body();
        b["password"] = json!("Secret#1");
        b["kafka_manager_password"] = json!("Secret#2");
        b["Sasl_Password_x"] = json!("Secret#3");
        b["vpc_id"] = json!("vpc-1");
        b["unknown"] = json!("x".repeat(200_000));
        b["nested"] = json!({"password": "Secret#4"});
        let n = new_instance(b).expect("valid");
        assert_eq!(n.extra.keys().collect::<Vec<_>>(), ["vpc_id"]);
        let inst = Instance::create(ProjectId::generate(), &n, "", "", 0);
        let stored = serde_json::to_string(&inst).expect("json");
        assert!(!stored.contains("Secret#"), "{stored}");
        assert!(!shown(&inst).to_string().contains("Secret#"));
    }

    #[test]
    fn kept_fields_are_bounded() {
        let mut b = body();
        b["description"] = json!("d".repeat(2000));
        assert_eq!(new_instance(b).err(), Some(Invalid::Param("description")));
        let mut b = body();
        b["available_zones"] = json!([1]);
        assert_eq!(new_instance(b).err(), Some(Invalid::Param("available_zones")));
    }

    #[test]
    fn only_listed_zones_are_accepted() {
        let mut b = body();
        b["available_zones"] = json!(["az1", "az3"]);
        assert!(new_instance(b).is_ok());
        for zones in [json!(["cn-north-4a"]), json!(["az1", "az9"]), json!(["AZ1"])] {
            let mut b = body();
            b["available_zones"] = zones;
            assert_eq!(new_instance(b).err(), Some(Invalid::Param("available_zones")));
        }
    }

    #[test]
    fn tags_are_kept_as_key_and_value_only_and_checked() {
        let mut b = body();
        b["tags"] = json!([{"key": "owner", "value": "team-a", "extra": 1}, {"key": "env"}]);
        let new = new_instance(b).expect("valid tags");
        assert_eq!(new.extra["tags"], json!([{"key": "owner", "value": "team-a"}, {"key": "env", "value": ""}]));
        let too_many: Vec<Value> = (0..=MAX_TAGS).map(|i| json!({"key": format!("k{i}"), "value": "v"})).collect();
        let bad = [
            json!("owner=a"),
            json!([{"value": "v"}]),
            json!([{"key": ""}]),
            json!([{"key": " padded"}]),
            json!([{"key": "k", "value": 1}]),
            json!([{"key": "k\u{1b}[31m"}]),
            json!([{"key": "k"}, {"key": "k"}]),
            json!([{"key": "k".repeat(129)}]),
            json!([{"key": "k", "value": "v".repeat(256)}]),
            Value::Array(too_many),
        ];
        for tags in bad {
            let mut b = body();
            b["tags"] = tags.clone();
            assert_eq!(new_instance(b).err(), Some(Invalid::Param("tags")), "{tags}");
        }
    }

    #[test]
    fn storage_has_a_maximum() {
        let mut b = body();
        b["storage_space"] = json!(3_000_000_000u64);
        assert_eq!(new_instance(b).err(), Some(Invalid::Param("storage_space")));
        let mut b = body();
        b["storage_space"] = json!(MAX_STORAGE_GB);
        assert!(new_instance(b).is_ok());
    }

    #[test]
    fn old_rows_lose_unkept_fields_when_read() {
        let n = new_instance(body()).expect("valid");
        let mut inst = Instance::create(ProjectId::generate(), &n, "", "", 0);
        inst.extra.insert("kafka_manager_password".into(), json!("Secret#1"));
        inst.extra.insert("vpc_id".into(), json!("vpc-1"));
        let old_row = serde_json::to_string(&inst).expect("json");
        let read: Instance = serde_json::from_str(&old_row).expect("readable");
        assert_eq!(read.extra.keys().collect::<Vec<_>>(), ["vpc_id"]);
        assert!(!serde_json::to_string(&read).expect("json").contains("Secret#"));
    }

    #[test]
    fn old_rows_do_not_echo_unkept_fields() {
        let n = new_instance(body()).expect("valid");
        let mut inst = Instance::create(ProjectId::generate(), &n, "", "", 0);
        inst.extra.insert("kafka_manager_password".into(), json!("Secret#1"));
        inst.extra.insert("vpc_id".into(), json!("vpc-1"));
        let shown = shown(&inst);
        assert!(shown.get("kafka_manager_password").is_none());
        assert_eq!(shown["vpc_id"], "vpc-1");
    }

    fn running() -> Instance {
        let mut inst = Instance::create(ProjectId::generate(), &new_instance(body()).expect("valid"), "", "", 0);
        inst.status = InstanceStatus::Running;
        inst
    }

    #[test]
    fn an_update_is_validated_as_create_validates() {
        let ok = update(json!({"name": "kafka-2", "maintain_begin": "18:00:00", "maintain_end": "22:00:00"}));
        assert_eq!(ok.map(|u| u.maintenance), Ok(Some(("18:00:00".into(), "22:00:00".into()))));
        assert_eq!(update(json!({"name": "k"})), Err(Invalid::Param("name")));
        assert_eq!(update(json!({})), Err(Invalid::Body));
        assert_eq!(update(json!([])), Err(Invalid::Body));
        let mut b = body();
        b["retention_policy"] = json!("sometimes");
        assert_eq!(new_instance(b).err(), Some(Invalid::Param("retention_policy")));
        let mut b = body();
        b["maintain_begin"] = json!("22:00:00");
        assert_eq!(new_instance(b).err(), Some(Invalid::Param("maintain_end")));
    }

    #[test]
    fn broker_settings_change_only_on_an_idle_running_instance() {
        let sg = update(json!({"security_group_id": "sg-2"})).expect("valid");
        let name = update(json!({"name": "other-name"})).expect("valid");
        let mut busy = running();
        busy.busy_task = Some(TaskId::generate());
        let before = busy.clone();
        assert_eq!(sg.apply(&mut busy), Err(Invalid::InstanceState));
        assert_eq!(busy, before, "a refusal changes nothing");
        assert_eq!(name.apply(&mut busy), Ok(()));
        assert_eq!(busy.name, "other-name");
        busy.extra.insert("security_group_id".into(), json!("sg-2"));
        assert_eq!(sg.apply(&mut busy), Ok(()), "the current value is no change");
        let mut failed = running();
        failed.status = InstanceStatus::CreateFailed;
        assert_eq!(sg.apply(&mut failed), Err(Invalid::InstanceState));
        let mut deleting = running();
        deleting.status = InstanceStatus::Deleting;
        assert_eq!(name.apply(&mut deleting), Err(Invalid::InstanceState));
        let mut idle = running();
        assert_eq!(sg.apply(&mut idle), Ok(()));
        assert_eq!(shown(&idle)["security_group_id"], "sg-2");
    }

    #[test]
    fn an_instance_stored_before_kernels_runs_the_first_build() {
        let inst = running();
        let mut row: Value = serde_json::to_value(&inst).expect("json");
        assert!(row.get("kernel_version").is_none());
        row["engine_version"] = json!("3.x");
        let read: Instance = serde_json::from_value(row).expect("readable");
        assert_eq!(read.kernel_version(), "3.1.1-h0.cbu.dms.100.r0");
    }
}

mod operation {
    use kafka_tasks_domain::Invalid;
    use kafka_tasks_domain::ProjectId;
    use kafka_tasks_domain::instance::{Instance, InstanceStatus, MAX_STORAGE_GB, NewInstance};
    use kafka_tasks_domain::operation::*;
    use serde_json::{Value, json};

    // The operations as a handler reaches them: a JSON body read through the wire.
    fn modify_configs(body: &Value, inst: &Instance) -> Result<Operation, Invalid> {
        let body: crate::operation::ModifyConfigsBody = crate::from_value(body.clone())?;
        kafka_tasks_domain::operation::modify_configs(body.requests().as_deref(), inst)
    }

    fn resize(body: &Value, inst: &Instance) -> Result<Operation, Invalid> {
        let body: crate::operation::ResizeBody = crate::from_value(body.clone())?;
        kafka_tasks_domain::operation::resize(&(&body).into(), inst)
    }

    fn reassign(body: &Value, inst: &Instance) -> Result<Operation, Invalid> {
        let body: crate::operation::ReassignBody = crate::from_value(body.clone())?;
        kafka_tasks_domain::operation::reassign(body.requests().as_deref(), body.throttle, inst)
    }

    fn schedule(body: &Value, now: i64) -> Result<Option<i64>, Invalid> {
        let body: crate::operation::UpgradeBody = crate::from_value(body.clone())?;
        kafka_tasks_domain::operation::schedule(body.is_schedule, body.execute_at, now)
    }

    fn instance() -> Instance {
        let new =
            NewInstance { name: "kafka-1".into(), product_id: "c6.2u4g.cluster".into(), ..NewInstance::example() };
        let mut inst = Instance::create(ProjectId::generate(), &new, "", "", 0);
        inst.status = InstanceStatus::Running;
        inst
    }

    const CTX: StepContext = StepContext { storage_pool_gb: 10_000, executed: OpSet::EMPTY, stepwise: false };

    #[test]
    fn config_changes_record_old_and_new_values() {
        let inst = instance();
        let op =
            modify_configs(&json!({"kafka_configs":[{"name":"log.retention.hours","value":"24"}]}), &inst).unwrap();
        assert_eq!(
            op.params(),
            r#"{"kafka_configs":[{"name":"log.retention.hours","new_value":"24","old_value":"72"}]}"#
        );
        assert_eq!(config_counts(&op), (1, 0));
        assert_eq!(op.plan().len(), 2);
    }

    #[test]
    fn bad_config_changes_are_refused() {
        let inst = instance();
        let bad = [
            json!({}),
            json!({"kafka_configs": []}),
            json!({"kafka_configs":[{"name":"no.such.config","value":"1"}]}),
            json!({"kafka_configs":[{"name":"log.retention.hours","value":"1000"}]}),
            json!({"kafka_configs":[{"name":"log.retention.hours"}]}),
        ];
        for b in bad {
            assert!(modify_configs(&b, &inst).is_err(), "{b}");
        }
    }

    #[test]
    fn static_configs_add_a_rolling_restart() {
        let op =
            modify_configs(&json!({"kafka_configs":[{"name":"num.partitions","value":"6"}]}), &instance()).unwrap();
        assert_eq!(op.plan().last().map(|s| s.0), Some(StepKind::RollingRestart));
        assert_eq!(config_counts(&op), (0, 1));
    }

    #[test]
    fn resize_only_grows() {
        let inst = instance();
        assert_eq!(
            resize(&json!({"oper_type":"storage","new_storage_space":300}), &inst),
            Err(Invalid::Param("new_storage_space"))
        );
        assert!(resize(&json!({"oper_type":"storage","new_storage_space":600}), &inst).is_ok());
        assert_eq!(resize(&json!({"oper_type":"sideways"}), &inst), Err(Invalid::Param("oper_type")));
        let h = resize(&json!({"oper_type":"horizontal","new_broker_num":6}), &inst).unwrap();
        assert!(matches!(h, Operation::Resize { new_storage: 600, new_brokers: 6, .. }));
    }

    #[test]
    fn a_horizontal_resize_never_wraps_and_stays_within_the_maximum() {
        let mut inst = instance();
        inst.broker_num = 1;
        inst.storage_space = 3_000_000_000;
        assert_eq!(
            resize(&json!({"oper_type":"horizontal","new_broker_num":2}), &inst),
            Err(Invalid::Param("new_broker_num"))
        );
        inst.storage_space = MAX_STORAGE_GB;
        assert_eq!(
            resize(&json!({"oper_type":"horizontal","new_broker_num":2}), &inst),
            Err(Invalid::Param("new_broker_num"))
        );
        inst.storage_space = MAX_STORAGE_GB / 2;
        let ok = resize(&json!({"oper_type":"horizontal","new_broker_num":2}), &inst).unwrap();
        assert!(matches!(ok, Operation::Resize { new_storage: s, .. } if s == MAX_STORAGE_GB / 2 * 2));
        assert_eq!(
            resize(&json!({"oper_type":"storage","new_storage_space": MAX_STORAGE_GB + 1}), &inst),
            Err(Invalid::Param("new_storage_space"))
        );
    }

    #[test]
    fn a_failure_restores_the_status_before_the_operation() {
        assert_eq!(Operation::Restart.failed_status(Some(InstanceStatus::Running)), InstanceStatus::Running);
        assert_eq!(Operation::Restart.failed_status(Some(InstanceStatus::CreateFailed)), InstanceStatus::CreateFailed);
        assert_eq!(
            Operation::DeleteInstance.failed_status(Some(InstanceStatus::CreateFailed)),
            InstanceStatus::CreateFailed
        );
        let create = Operation::from(&NewInstance {
            name: "k".into(),
            engine_version: "2.7".into(),
            broker_num: 1,
            storage_space: 100,
            product_id: "p".into(),
            enable_auto_topic: false,
            extra: Default::default(),
        });
        assert_eq!(create.failed_status(Some(InstanceStatus::Creating)), InstanceStatus::CreateFailed);
    }

    #[test]
    fn a_scheduled_operation_is_checked_again_against_the_instance() {
        let mut inst = instance();
        let up = upgrade(&inst, LATER).unwrap();
        assert_eq!(up.still_applies(&inst), Ok(()));
        inst.kernel_version = Some(LATER.into());
        assert!(up.still_applies(&inst).is_err(), "the instance is on the target already");
        let mut inst = instance();
        inst.broker_num = 4;
        assert!(up.still_applies(&inst).is_err(), "the rolling plan names 3 brokers");
        let mut inst = instance();
        let grow = resize(&json!({"oper_type":"storage","new_storage_space":600}), &inst).unwrap();
        inst.storage_space = 900;
        assert!(grow.still_applies(&inst).is_err(), "a resize would shrink the disks");
        let mut inst = instance();
        assert_eq!(Operation::Restart.still_applies(&inst), Ok(()));
        inst.status = InstanceStatus::CreateFailed;
        assert!(Operation::Restart.still_applies(&inst).is_err());
        assert_eq!(Operation::DeleteInstance.still_applies(&inst), Ok(()));
    }

    #[test]
    fn a_resize_beyond_the_pool_fails_at_disk_expansion_and_changes_nothing() {
        let mut inst = instance();
        let before = inst.clone();
        let op = resize(&json!({"oper_type":"storage","new_storage_space":20_000}), &inst).unwrap();
        assert_eq!(op.finish_step(0, false, &mut inst, CTX), StepEffect::Done);
        assert!(matches!(op.finish_step(1, false, &mut inst, CTX), StepEffect::Failed(_)));
        assert_eq!(inst, before);
    }

    #[test]
    fn the_last_step_applies_the_change() {
        let mut inst = instance();
        let op = resize(&json!({"oper_type":"storage","new_storage_space":600}), &inst).unwrap();
        assert_eq!(op.finish_step(2, true, &mut inst, CTX), StepEffect::Done);
        assert_eq!(inst.storage_space, 600);
    }

    #[test]
    fn a_bound_instance_leaves_its_broker_ids_to_its_cluster() {
        // A cluster's node ids need not be 0..broker_num; the kafka executor checks them there.
        let mut inst = instance();
        let body = json!({"reassignments":[{"topic":"t","brokers":[1,2,3],"replication_factor":3}]});
        assert_eq!(reassign(&body, &inst), Err(Invalid::Param("brokers")));
        inst.cluster_bound = true;
        assert!(reassign(&body, &inst).is_ok());
        let negative = json!({"reassignments":[{"topic":"t","brokers":[-1]}]});
        assert_eq!(reassign(&negative, &inst), Err(Invalid::Param("brokers")));
        let too_big = json!({"reassignments":[{"topic":"t","brokers":[2147483648_u64]}]});
        assert_eq!(reassign(&too_big, &inst), Err(Invalid::Param("brokers")));
    }

    #[test]
    fn reassignment_must_name_existing_brokers() {
        let inst = instance();
        assert!(reassign(&json!({"reassignments":[{"topic":"t","brokers":[0,1,2]}]}), &inst).is_ok());
        assert_eq!(
            reassign(&json!({"reassignments":[{"topic":"t","brokers":[0,3]}]}), &inst),
            Err(Invalid::Param("brokers"))
        );
        assert_eq!(
            reassign(&json!({"reassignments":[{"topic":"t","assignment":[{"partition":0,"assignment":[7]}]}]}), &inst),
            Err(Invalid::Param("assignment"))
        );
        assert_eq!(
            reassign(&json!({"reassignments":[{"topic":"t","brokers":[0],"replication_factor":2}]}), &inst),
            Err(Invalid::Param("replication_factor"))
        );
    }

    #[test]
    fn reassigned_topics_follow_kafkas_rule() {
        let inst = instance();
        let one = |topic: &str| json!({"reassignments":[{"topic":"fine","brokers":[0]},{"topic":topic,"brokers":[0]}]});
        assert!(reassign(&one("orders.v2_x-1"), &inst).is_ok());
        for bad in ["a\tb", "a\nb", "a b", ".", ".."] {
            assert_eq!(reassign(&one(bad), &inst), Err(Invalid::Param("topic")), "{bad:?}");
        }
        // One recorded before the rule no longer applies when it is due.
        let recorded = Operation::Reassign { reassignments: json!([{"topic":"a\tb","brokers":[0]}]), throttle: None };
        assert!(recorded.still_applies(&inst).is_err());
    }

    #[test]
    fn a_reassignment_records_only_what_it_interprets() {
        let inst = instance();
        let body = json!({"reassignments":[{"topic":"t","brokers":[0,1],"junk":"x".repeat(1000),
            "assignment":[{"partition":0,"assignment":[2],"junk":1}]}]});
        let op = reassign(&body, &inst).unwrap();
        assert!(!op.params().contains("junk"), "{}", op.params());
        assert_eq!(op.still_applies(&inst), Ok(()), "a recorded reassignment checks again");
        let many = json!({"reassignments":[{"topic":"t","brokers": vec![0; 51]}]});
        assert_eq!(reassign(&many, &inst), Err(Invalid::Param("brokers")));
    }

    #[test]
    fn schedules_must_lie_in_the_future() {
        assert_eq!(schedule(&json!({}), 0), Ok(None));
        assert_eq!(schedule(&json!({"is_schedule": true, "execute_at": 60_000}), 0), Ok(Some(60_000)));
        assert_eq!(schedule(&json!({"is_schedule": true, "execute_at": 10}), 0), Err(Invalid::Timestamp));
        assert_eq!(schedule(&json!({"is_schedule": true}), 0), Err(Invalid::Timestamp));
    }

    const LATER: &str = "2.7.1-h0.cbu.dms.102.r0";

    #[test]
    fn an_upgrade_changes_the_kernel_broker_by_broker_never_the_engine_version() {
        let mut inst = instance();
        let before = inst.kernel_version().to_owned();
        assert_eq!(upgrade(&inst, &before), Err(Invalid::AlreadyLatest));
        let op = upgrade(&inst, LATER).unwrap();
        let names: Vec<String> = op.steps(1.0).into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["pre_check", "upgrade_broker_0", "upgrade_broker_1", "upgrade_broker_2", "post_check"]);
        assert!(op.steps(1.0)[1..4].iter().all(|s| s.duration_ms == BROKER_UPGRADE_MS));
        assert_eq!(
            op.params(),
            format!(r#"{{"engine_version":"2.7","new_version":"{LATER}","old_version":"{before}"}}"#)
        );
        for step in 0..4 {
            assert_eq!(op.finish_step(step, false, &mut inst, CTX), StepEffect::Done);
            assert_eq!(inst.kernel_version(), before, "only the last step applies the change");
        }
        assert_eq!(op.finish_step(4, true, &mut inst, CTX), StepEffect::Done);
        assert_eq!(inst.kernel_version(), LATER);
        assert_eq!(inst.engine_version, "2.7");
    }

    #[test]
    fn an_old_engine_version_upgrade_record_still_loads_and_no_longer_applies() {
        let old: Operation =
            serde_json::from_str(r#"{"op":"upgrade","old_version":"2.7","new_version":"3.x"}"#).expect("readable");
        let mut inst = instance();
        assert!(old.still_applies(&inst).is_err());
        assert_eq!(old.finish_step(2, true, &mut inst, CTX), StepEffect::Done);
        assert_eq!(inst.engine_version, "2.7");
    }

    #[test]
    fn a_reassignment_without_throttle_records_none() {
        let op = reassign(&json!({"reassignments":[{"topic":"t","brokers":[0]}]}), &instance()).unwrap();
        assert_eq!(op.params(), r#"{"reassignments":[{"brokers":[0],"topic":"t"}]}"#);
        let op = reassign(&json!({"reassignments":[{"topic":"t","brokers":[0]}],"throttle":-1}), &instance()).unwrap();
        assert!(op.params().contains(r#""throttle":-1"#));
    }

    #[test]
    fn every_operation_has_a_task_name_an_op_set_knows() {
        let mut set = OpSet::default();
        assert!(!set.insert("noSuchOperation"));
        assert!(set.insert(Operation::Restart.task_name()));
        assert!(set.contains("restartInstance") && !set.contains("deleteInstance"));
        let inst = instance();
        let every = [
            Operation::CreateInstance {
                name: "k".into(),
                engine_version: "2.7".into(),
                broker_num: 1,
                storage_space: 100,
            },
            Operation::DeleteInstance,
            Operation::Restart,
            Operation::ModifyConfigs { changes: vec![] },
            Operation::AutoTopic { old: false, new: true },
            resize(&json!({"oper_type":"storage","new_storage_space":600}), &inst).unwrap(),
            reassign(&json!({"reassignments":[{"topic":"t","brokers":[0]}]}), &inst).unwrap(),
            upgrade(&inst, LATER).unwrap(),
            Operation::LegacyUpgrade { old_version: "2.7".into(), new_version: "3.x".into() },
        ];
        let names: std::collections::BTreeSet<&str> = every.iter().map(Operation::task_name).collect();
        assert_eq!(names, TASK_NAMES.into_iter().collect(), "TASK_NAMES is every operation's name, once");
    }

    #[test]
    fn steps_scale_with_time() {
        let op = Operation::Restart;
        assert!(op.steps(0.0).iter().all(|s| s.duration_ms == 0));
        assert_eq!(op.steps(0.5)[1].duration_ms, 30_000);
    }
}
