"""OpenTofu with the real huaweicloud provider (huaweicloud/terraform-provider-huaweicloud) against
the real binary: `tofu apply` creates a `huaweicloud_dms_kafka_instance`, changes its parameters and
auto-topic, resizes its storage, reads the `huaweicloud_dms_kafka_background_tasks` data source;
then `tofu plan -detailed-exitcode` must show no changes and `tofu destroy` must leave no instance.

Runs only when KT_TOFU (the tofu binary) and KT_PROVIDER_DIR (the directory holding
terraform-provider-huaweicloud) are set: scripts/tofu-tools.sh builds both and scripts/test.sh sets
them. The provider is used through `dev_overrides` (no `tofu init`). Its start-up makes no IAM call
with AK/SK, an explicit `project_id`, `domain_id` and `skip_check_website_type` (config/auth.go
buildClientByAKSK sets WithUserCatalog, so golangsdk v3AKSKAuth looks nothing up; without
`domain_id`, config.go LoadAndValidate asks `GET {iam}/v3/auth/domains` and only warns); `auth_url`
points at the server anyway, so that a stray IAM call shows in its log instead of leaving the machine.

Steps that fail because the server lacks something the provider needs are xfail(strict=True) with
the provider function and the call named (READ_GAP, CROSS_VPC_GAP): when the server gains it, the
step passes, the run fails as XPASS, and the mark is to be removed.

The provider's waits are real: createKafkaInstanceWithFlavor waits 300 s before its first poll
(waitForInstanceStatusComplete), so this module takes several minutes.
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

    def configure(self, instance_extra="", data_source=False, update_timeout="6m"):
        cred = self.server.admin
        url = self.server.url + "/"
        data = textwrap.dedent(f"""
            data "huaweicloud_dms_kafka_background_tasks" "tasks" {{
              instance_id = {INSTANCE}.id
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
              available_zones   = ["az1"]
            """) + textwrap.indent(textwrap.dedent(instance_extra), "  ") + textwrap.dedent(f"""
              timeouts {{
                create = "10m"
                update = "{update_timeout}"
                delete = "5m"
              }}
            }}
            """) + data)

    def tofu(self, *args, check=True):
        flags = ["-no-color"] + (["-input=false"] if args[0] in ("apply", "plan", "destroy") else [])
        res = subprocess.run([TOFU, f"-chdir={self.path}", *args, *flags],
                             env=self.env, capture_output=True, text=True, timeout=1500)
        if check and res.returncode != 0:
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
    if os.path.exists(w.path / "terraform.tfstate"):
        # Without a refresh: a read that fails (see READ_GAP) must not keep the instance alive.
        w.tofu("destroy", "-auto-approve", "-refresh=false", check=False)


@pytest.fixture(scope="module")
def api(server):
    cred = server.admin
    return GoClient(server.url, cred["access_key"], cred["secret_key"], cred["project_id"])


# What kafka-tasks does not serve yet, each with the provider function that needs it.
READ_GAP = (
    "resourceDmsKafkaInstanceRead (resource_huaweicloud_dms_kafka_instance.go) converts the "
    "instance's `available_zones` IDs to codes with GetAvailableZoneCodeByID → getAvailableZones: "
    "golangsdk dms/v2/availablezones.Get, `GET /v2/available-zones` (no project id), which kafka-tasks "
    "answers 404; the error fails every read, so every refresh (apply, plan, destroy) fails")
CROSS_VPC_GAP = (
    "resourceDmsKafkaInstanceCreate waits for a non-empty `cross_vpc_info` in ShowInstance "
    "(kafkaInstanceCrossVpcInfoRefreshFunc, Pending PENDING, Target BOUND) for the update timeout; "
    "kafka-tasks sends none, so create ends with the warning 'failed to enable cross-VPC' and skips "
    "initializeParameters and the read")

CHARGING_MODE_GAP = (
    "resourceDmsKafkaInstanceRead sets charging_mode to prePaid when ShowInstance's `charging_mode` "
    "is 0 or absent (kafka-tasks sends none; pay-per-use is 1); resourceDmsKafkaInstanceDelete then "
    "unsubscribes through BSS (common.UnsubscribePrePaidResource, `POST "
    "https://bss.myhuaweicloud.com/v2/orders/subscriptions/resources/unsubscribe`) instead of "
    "instances.Delete")
ROUND_TRIP_GAP = (
    "the read leaves `tags` and `cluster` unset because `GET /v2/{project_id}/kafka/{instance_id}/tags` "
    "and `GET /v2/{project_id}/instances/{instance_id}/manage/cluster` answer 404 (the provider only "
    "logs those), so every plan shows them as (known after apply)")

BASE = """\
    storage_space = 300
"""


def test_apply_creates_the_instance(ws, api):
    # resourceDmsKafkaInstanceCreate waits for `cross_vpc_info` (kafkaInstanceCrossVpcInfoRefreshFunc)
    # for as long as the *update* timeout allows, then only warns: kept short here.
    ws.configure(BASE, update_timeout="30s")
    ws.created = ws.tofu("apply", "-auto-approve")
    iid = json.loads(ws.tofu("show", "-json").stdout)["values"]["root_module"]["resources"][0]["values"]["id"]
    shown = api.request("GET", api.url("v2/{project_id}/instances/{instance_id}", instance_id=iid)).json()
    assert (shown["status"], shown["name"], shown["broker_num"]) == ("RUNNING", "tofu-kafka", 3)


@pytest.mark.xfail(strict=True, reason=CROSS_VPC_GAP)
def test_create_ends_without_warnings(ws):
    if ws.created is None:
        pytest.skip("create failed")
    assert "failed to enable cross-VPC" not in ws.created.stdout + ws.created.stderr


@pytest.mark.xfail(strict=True, reason=READ_GAP)
def test_state_after_create_is_read_back(ws):
    ws.tofu("apply", "-auto-approve", "-refresh-only")
    inst = ws.state()[INSTANCE]
    assert inst["status"] == "RUNNING"
    assert (inst["name"], inst["broker_num"], inst["storage_space"]) == ("tofu-kafka", 3, 300)


@pytest.mark.xfail(strict=True, reason=READ_GAP)
def test_apply_changes_parameters_and_auto_topic(ws):
    ws.configure(BASE + """\
        description       = "managed by OpenTofu"
        enable_auto_topic = true
        parameters {
          name  = "log.retention.hours"
          value = "48"
        }
    """, data_source=True)
    ws.tofu("apply", "-auto-approve")
    inst = ws.state()[INSTANCE]
    assert inst["enable_auto_topic"] is True
    assert {p["name"]: p["value"] for p in inst["parameters"]}["log.retention.hours"] == "48"
    out = json.loads(ws.tofu("output", "-json").stdout)
    assert "kafkaConfigModify" in out["task_names"]["value"]


@pytest.mark.xfail(strict=True, reason=READ_GAP)
def test_apply_resizes_the_storage(ws):
    ws.configure("""\
        storage_space     = 600
        description       = "managed by OpenTofu"
        enable_auto_topic = true
        parameters {
          name  = "log.retention.hours"
          value = "48"
        }
    """, data_source=True)
    ws.tofu("apply", "-auto-approve")
    assert ws.state()[INSTANCE]["storage_space"] == 600


@pytest.mark.xfail(strict=True, reason=READ_GAP + "; then " + ROUND_TRIP_GAP)
def test_plan_shows_no_changes(ws):
    """The state round-trips: a read after the applies gives back what the configuration says."""
    res = ws.tofu("plan", "-detailed-exitcode", check=False)
    assert res.returncode == 0, f"plan shows changes or failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-2000:]}"


@pytest.mark.xfail(strict=True, reason=READ_GAP + "; then " + CHARGING_MODE_GAP)
def test_destroy_leaves_no_instance(ws, api):
    ws.tofu("destroy", "-auto-approve")
    body = api.request("GET", api.url("v2/{project_id}/instances")).json()
    assert body["instances"] == [], body


def test_nothing_is_left_on_the_server(ws, api):
    """Whatever the steps above managed, a destroy without refresh (as the fixture does) leaves the
    project empty: the provider's delete and its wait for the 404 work. Once a read succeeds it
    stores charging_mode, and this fails too until CHARGING_MODE_GAP is closed."""
    if os.path.exists(ws.path / "terraform.tfstate"):
        ws.tofu("destroy", "-auto-approve", "-refresh=false")
    body = api.request("GET", api.url("v2/{project_id}/instances")).json()
    assert body["instances"] == [], body
