"""OpenTofu with the real huaweicloud provider (huaweicloud/terraform-provider-huaweicloud) against
the real binary: `tofu apply` creates a tagged `huaweicloud_dms_kafka_instance`, reads it back,
changes its parameters and auto-topic, resizes its storage, runs partition reassignments
(`huaweicloud_dms_kafka_partition_reassign`), deletes one of their tasks
(`huaweicloud_dms_kafka_background_task_delete`) and reads the `huaweicloud_dms_kafka_background_tasks`
data source over more than one page; then `tofu plan -detailed-exitcode` must show no changes and
`tofu destroy` must leave no instance, as the server's own instance list says.

Runs only when KT_TOFU (the tofu binary) and KT_PROVIDER_DIR (the directory holding
terraform-provider-huaweicloud) are set: scripts/tofu-tools.sh builds both and scripts/test.sh sets
them. The provider is used through `dev_overrides` (no `tofu init`). Its start-up makes no IAM call
with AK/SK, an explicit `project_id`, `domain_id` and `skip_check_website_type` (config/auth.go
buildClientByAKSK sets WithUserCatalog, so golangsdk v3AKSKAuth looks nothing up; without
`domain_id`, config.go LoadAndValidate asks `GET {iam}/v3/auth/domains` and only warns); `auth_url`
points at the server anyway, so that a stray IAM call shows in its log instead of leaving the machine.

Each step relies on the one before (one workspace, one state), so a failed step skips the rest
instead of failing them again. The provider's waits are real: createKafkaInstanceWithFlavor waits
300 s before its first poll (waitForInstanceStatusComplete) and a resize 180 s, so this module
takes several minutes; scripts/test.sh runs it in the background beside the Rust tests.
"""

import json
import os
import subprocess
import textwrap

import pytest
from golangsdk import GoClient

TOFU = os.environ.get("KT_TOFU")
PROVIDER_DIR = os.environ.get("KT_PROVIDER_DIR")

pytestmark = pytest.mark.skipif(
    not (TOFU and PROVIDER_DIR), reason="KT_TOFU and KT_PROVIDER_DIR not set (scripts/tofu-tools.sh)")

INSTANCE = "huaweicloud_dms_kafka_instance.kafka"


class Workspace:
    """A directory with a `.tofurc`, one configuration file rewritten per step, the state, and a
    debug log of the provider (TF_LOG_PATH) kept for the report of a failure. `created` holds the
    output of the create step."""

    def __init__(self, path, server):
        self.path = path
        self.server = server
        self.created = None
        self.failed = None
        rc = path / "tofurc"
        rc.write_text(textwrap.dedent(f"""\
            provider_installation {{
              dev_overrides {{
                "huaweicloud/huaweicloud" = "{PROVIDER_DIR}"
              }}
              direct {{}}
            }}
            """))
        self.env = dict(os.environ, TF_CLI_CONFIG_FILE=str(rc), TF_IN_AUTOMATION="1", TF_LOG="DEBUG",
                        TF_LOG_PATH=str(path / "tofu-debug.log"), CHECKPOINT_DISABLE="1")

    def configure(self, instance_extra="", data_source=False, extra=""):
        cred = self.server.admin
        url = self.server.url + "/"
        data = textwrap.dedent(f"""
            data "huaweicloud_dms_kafka_background_tasks" "tasks" {{
              instance_id = {INSTANCE}.id
              {data_source if isinstance(data_source, str) else ""}
            }}

            output "task_ids" {{
              value = [for t in data.huaweicloud_dms_kafka_background_tasks.tasks.tasks : t.id]
            }}

            output "task_names" {{
              value = [for t in data.huaweicloud_dms_kafka_background_tasks.tasks.tasks : t.name]
            }}
            """) if data_source else ""
        (self.path / "main.tf").write_text(textwrap.dedent(f"""\
            terraform {{
              required_providers {{
                huaweicloud = {{ source = "huaweicloud/huaweicloud" }}
              }}
            }}

            provider "huaweicloud" {{
              region                  = "cn-north-4"
              access_key              = "{cred['access_key']}"
              secret_key              = "{cred['secret_key']}"
              project_id              = "{cred['project_id']}"
              domain_id               = "kafka-tasks"
              auth_url                = "{url}v3"
              skip_check_website_type = true
              skip_check_upgrade      = true
              max_retries             = 0
              endpoints = {{
                dms = "{url}"
                vpc = "{url}"
              }}
            }}

            resource "huaweicloud_dms_kafka_instance" "kafka" {{
              name              = "tofu-kafka"
              engine_version    = "2.7"
              flavor_id         = "c6.2u4g.cluster"
              broker_num        = 3
              storage_spec_code = "dms.physical.storage.high.v2"
              vpc_id            = "vpc-1"
              network_id        = "subnet-1"
              security_group_id = "sg-1"
              availability_zones = ["kafka-tasks-1a"]
            """) + textwrap.indent(textwrap.dedent(instance_extra), "  ") + textwrap.dedent(f"""
              timeouts {{
                create = "10m"
                update = "6m"
                delete = "5m"
              }}
            }}
            """) + data + textwrap.dedent(extra))

    def tofu(self, *args, check=True):
        flags = ["-no-color"] + (["-input=false"] if args[0] in ("apply", "plan", "destroy") else [])
        if self.failed:
            pytest.skip(f"an earlier step failed: {self.failed}")
        res = subprocess.run([TOFU, f"-chdir={self.path}", *args, *flags],
                             env=self.env, capture_output=True, text=True, timeout=1500)
        if check and res.returncode != 0:
            self.failed = f"tofu {args[0]}"
            pytest.fail(f"tofu {' '.join(args)} exited {res.returncode}\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
                        f"\n(debug log: {self.path / 'tofu-debug.log'})")
        return res

    def state(self):
        out = self.tofu("show", "-json").stdout
        values = json.loads(out).get("values", {})
        return {r["address"]: r["values"] for r in values.get("root_module", {}).get("resources", [])}


@pytest.fixture(scope="module")
def ws(server, tmp_path_factory):
    w = Workspace(tmp_path_factory.mktemp("tofu"), server)
    yield w
    w.failed = None
    if os.path.exists(w.path / "terraform.tfstate"):
        # Without a refresh: whatever failed before, the instance must not outlive the test.
        w.tofu("destroy", "-auto-approve", "-refresh=false", check=False)


@pytest.fixture(scope="module")
def api(server):
    cred = server.admin
    return GoClient(server.url, cred["access_key"], cred["secret_key"], cred["project_id"])


def instances(api):
    """The project's instances, as the server lists them (signed as the provider's SDK signs)."""
    return api.request("GET", api.url("v2/{project_id}/instances")).json()["instances"]


def server_tasks(api, iid):
    """Every background task of the instance, as the server lists them in one page."""
    url = api.url("v2/{project_id}/instances/{instance_id}/tasks", instance_id=iid) + "?limit=100"
    return api.request("GET", url).json()["tasks"]


BASE = """\
    storage_space = 300
    tags = {
      owner = "tofu"
      env   = "ci"
    }
"""

CHANGED = """\
    description       = "managed by OpenTofu"
    enable_auto_topic = true
    parameters {
      name  = "log.retention.hours"
      value = "48"
    }
"""

RESIZED = BASE.replace("storage_space = 300", "storage_space = 600") + CHANGED

# Enough reassignments that the instance's tasks (create, parameters, auto-topic, resize and
# these) fill more than one page of the data source, which asks for ten at a time.
REASSIGNMENTS = 9

REASSIGN = f"""
resource "huaweicloud_dms_kafka_partition_reassign" "moves" {{
  count       = {REASSIGNMENTS}
  instance_id = {INSTANCE}.id
  reassignments {{
    topic              = "orders-${{count.index}}"
    brokers            = [0, 1, 2]
    replication_factor = 3
  }}
}}

resource "huaweicloud_dms_kafka_background_task_delete" "first_move" {{
  instance_id = {INSTANCE}.id
  task_id     = huaweicloud_dms_kafka_partition_reassign.moves[0].task_id
}}
"""

# After the reassignments and the deletion: the data source reads what they left.
AFTER_REASSIGN = """depends_on = [huaweicloud_dms_kafka_partition_reassign.moves,
                              huaweicloud_dms_kafka_background_task_delete.first_move]"""


def test_apply_creates_the_instance_without_warnings(ws, api):
    """resourceDmsKafkaInstanceCreate waits for RUNNING, then for `cross_vpc_info`
    (kafkaInstanceCrossVpcInfoRefreshFunc) before it sets the parameters and reads the instance
    back; a warning would mean it gave up on that wait."""
    ws.configure(BASE)
    ws.created = ws.tofu("apply", "-auto-approve")
    out = ws.created.stdout + ws.created.stderr
    warnings = [line for line in out.splitlines() if line.startswith("Warning: ")]
    # dev_overrides (how the provider is installed here) always warns.
    assert warnings == ["Warning: Provider development overrides are in effect"], out[-4000:]
    iid = ws.state()[INSTANCE]["id"]
    shown = api.request("GET", api.url("v2/{project_id}/instances/{instance_id}", instance_id=iid)).json()
    assert (shown["status"], shown["name"], shown["broker_num"]) == ("RUNNING", "tofu-kafka", 3)
    assert sorted((t["key"], t["value"]) for t in shown["tags"]) == [("env", "ci"), ("owner", "tofu")]


def test_state_after_create_is_read_back(ws):
    """The read (resourceDmsKafkaInstanceRead) fills the state from ShowInstance, ListAvailableZones,
    ShowKafkaTags and ShowKafkaCluster."""
    ws.tofu("apply", "-auto-approve", "-refresh-only")
    inst = ws.state()[INSTANCE]
    assert inst["status"] == "RUNNING"
    assert (inst["name"], inst["broker_num"], inst["storage_space"]) == ("tofu-kafka", 3, 300)
    assert inst["charging_mode"] == "postPaid"
    assert inst["available_zones"] == ["az1"] and inst["availability_zones"] == ["kafka-tasks-1a"]
    assert inst["tags"] == {"owner": "tofu", "env": "ci"}
    brokers = inst["cluster"][0]["brokers"]
    listeners = {a["listener_ip"]: a for a in inst["cross_vpc_accesses"]}
    assert len(brokers) == 3 and {b["host"] for b in brokers} == set(listeners), (brokers, listeners)
    assert sorted(inst["connect_address"].split(",")) == sorted(listeners)


def test_apply_changes_parameters_and_auto_topic(ws):
    ws.configure(BASE + CHANGED, data_source=True)
    ws.tofu("apply", "-auto-approve")
    inst = ws.state()[INSTANCE]
    assert inst["enable_auto_topic"] is True
    assert {p["name"]: p["value"] for p in inst["parameters"]}["log.retention.hours"] == "48"
    out = json.loads(ws.tofu("output", "-json").stdout)
    assert "kafkaConfigModify" in out["task_names"]["value"]


def test_apply_resizes_the_storage(ws, api):
    ws.configure(RESIZED, data_source=True)
    ws.tofu("apply", "-auto-approve")
    assert ws.state()[INSTANCE]["storage_space"] == 600
    iid = ws.state()[INSTANCE]["id"]
    shown = api.request("GET", api.url("v2/{project_id}/instances/{instance_id}", instance_id=iid)).json()
    assert shown["total_storage_space"] == 600


def test_reassignments_task_deletion_and_task_pages(ws, api):
    """Partition reassignments (each waits for its task), the deletion of the first one's task,
    then the data source pages through every task (`?limit=10&start=1`, then `start=11`)."""
    ws.configure(RESIZED, data_source=AFTER_REASSIGN, extra=REASSIGN)
    # One at a time: an instance runs one operation at a time, and the provider does not retry
    # a refused reassignment.
    ws.tofu("apply", "-auto-approve", "-parallelism=1")
    state = ws.state()
    iid = state[INSTANCE]["id"]
    moved = [state[f"huaweicloud_dms_kafka_partition_reassign.moves[{i}]"]["task_id"] for i in range(REASSIGNMENTS)]
    deleted = state["huaweicloud_dms_kafka_background_task_delete.first_move"]["task_id"]
    assert deleted == moved[0]
    on_server = server_tasks(api, iid)
    ids = {t["id"] for t in on_server}
    assert deleted not in ids and set(moved[1:]) <= ids, (moved, ids)
    gone = api.request("GET", api.url("v2/{project_id}/instances/{instance_id}/tasks/{task_id}",
                                      instance_id=iid, task_id=deleted), ok_codes=[404])
    assert gone.status == 404
    out = json.loads(ws.tofu("output", "-json").stdout)
    assert sorted(out["task_ids"]["value"]) == sorted(ids)
    assert len(ids) > 10, f"one page only: {len(ids)} tasks"
    log = (ws.path / "tofu-debug.log").read_text(errors="replace")
    assert "limit=10&start=11" in log, "the data source never asked for the second page"


def test_plan_shows_no_changes(ws):
    """The state round-trips: a read after the applies gives back what the configuration says."""
    res = ws.tofu("plan", "-detailed-exitcode", check=False)
    assert res.returncode == 0, f"plan shows changes or failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-2000:]}"


def test_destroy_deletes_and_leaves_no_instance(ws, api):
    """charging_mode is postPaid, so resourceDmsKafkaInstanceDelete deletes with
    `DELETE …/instances/{id}` (not a BSS unsubscribe) and waits for the 404."""
    ws.tofu("destroy", "-auto-approve")
    assert instances(api) == []
    log = (ws.path / "tofu-debug.log").read_text(errors="replace")
    assert "unsubscribe" not in log
