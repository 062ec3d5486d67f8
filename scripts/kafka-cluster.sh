#!/usr/bin/env bash
# A three-node Apache Kafka test cluster for the connected-mode tests: KRaft, every node both
# broker and controller (static voters), one JVM per node, each with a PLAINTEXT listener, a
# SASL/SCRAM-SHA-512 one, an SSL one and a SASL_SSL (SCRAM) one on loopback. The TLS listeners'
# certificate is signed by a CA the script makes with openssl once per cluster (tls/ca.pem; a
# second CA that signed nothing, tls/other-ca.pem, is there for tests of a wrong CA). Kafka comes from Maven Central (the only place this
# project's machines and CI can download from), cached per version, so only the first run on a
# machine downloads.
#
# Usage: scripts/kafka-cluster.sh COMMAND [ARGS]
#   fetch            download the jars of $KAFKA_VERSION (default: the pin below) into the cache
#   start            lay out, format and start a new cluster, or start the stopped nodes of the one
#                    already in the cluster directory; returns once all three brokers serve
#   stop             stop every node this script started (SIGTERM, SIGKILL after a bound); data kept
#   status           one line per node; exits 1 unless all three run
#   stop-node N | start-node N | restart-node N     one node (1-3, or an added one), for rolling restarts
#   add-node N       a broker-only node N (4-9) joining the cluster (the controllers stay 1-3): laid
#                    out and formatted the first time, started, waited for until it serves
#   remove-node N    stop added node N, unregister it from the cluster, remove its files
#   env              KEY=value lines for tests (also in <cluster dir>/cluster.env): bootstrap
#                    addresses, cluster id, the files holding the SCRAM test user
#   tools CLASS|ALIAS [ARGS]   run a Kafka tool from the same jars, logs on stderr
#   clean            stop, then remove the cluster directory
#
# Environment:
#   KAFKA_VERSION        Kafka to fetch or run (default the pin, $KAFKA_PINNED_VERSION below). A new
#                        cluster is formatted with it; a node starts with it, else with the version
#                        it last ran, else the cluster's: `KAFKA_VERSION=4.0.1 … start`, then
#                        `KAFKA_VERSION=<newer> … restart-node 1` is a rolling upgrade.
#   KAFKA_CLUSTER_DIR    default <repo>/target/kafka-cluster
#   KAFKA_BASE_PORT      default 19092: node N listens on base+N-1 (PLAINTEXT), base+100+N-1
#                        (CONTROLLER, nodes 1-3), base+200+N-1 (SASL_PLAINTEXT, SCRAM-SHA-512),
#                        base+300+N-1 (SSL) and base+400+N-1 (SASL_SSL, SCRAM-SHA-512). "auto":
#                        the first of 19092, 20092, … 28092 whose nine ports are free. Read when a
#                        cluster is made; the cluster keeps its base (file base-port) after that.
#   KAFKA_CACHE_DIR      default ${XDG_CACHE_HOME:-$HOME/.cache}/kafka-tasks/kafka (<version>/lib)
#   KAFKA_HEAP_OPTS      default "-Xms256m -Xmx512m" per node
#   KAFKA_JVM_OPTS       default "-XX:+UseSerialGC -XX:TieredStopAtLevel=1" per node
#   KAFKA_START_TIMEOUT  seconds `start`/`start-node` wait for the brokers (default 120)
#   KAFKA_STOP_TIMEOUT   seconds a node gets after SIGTERM before SIGKILL (default 30)
#   MAVEN_OPTS           passed to mvn as usual (e.g. -Dmaven.repo.local=… for a throwaway cache)
#
# Tool classes in Kafka 4.x (found by listing the jars; each also has the alias in brackets):
#   org.apache.kafka.tools.TopicCommand                         [topics]
#   kafka.admin.ConfigCommand                                   [configs]
#   org.apache.kafka.tools.reassign.ReassignPartitionsCommand   [reassign]
#   org.apache.kafka.tools.VerifiableProducer                   [producer]
#   org.apache.kafka.tools.VerifiableConsumer                   [consumer]
#   org.apache.kafka.tools.MetadataQuorumCommand                [quorum]
#   org.apache.kafka.tools.FeatureCommand                       [features]
#   org.apache.kafka.tools.BrokerApiVersionsCommand             [api-versions]
#   org.apache.kafka.tools.ClusterTool                          [cluster]
#   org.apache.kafka.tools.consumer.group.ConsumerGroupCommand  [groups]
#   org.apache.kafka.tools.LogDirsCommand                       [log-dirs]
#   org.apache.kafka.tools.LeaderElectionCommand                [leader-election]
#   org.apache.kafka.tools.GetOffsetShell                       [get-offsets]
#   org.apache.kafka.tools.DeleteRecordsCommand                 [delete-records]
#   org.apache.kafka.tools.ConsoleProducer                      [console-producer]
#   org.apache.kafka.tools.consumer.ConsoleConsumer             [console-consumer]
#   kafka.tools.StorageTool                                     [storage]
# For example: scripts/kafka-cluster.sh tools topics --bootstrap-server 127.0.0.1:19092 --list
set -euo pipefail

# The one pinned Kafka. Versions 4.0.1 to 4.4.0 are on Maven Central; 4.3.2 is the newest patch
# release of a line that has had patch releases.
KAFKA_PINNED_VERSION=4.3.2
# log4j2 for Kafka's slf4j 1.7 logging (the published POMs bring no binding), one version for
# every Kafka so that the log configuration below means the same everywhere.
LOG4J_VERSION=2.25.5
DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${KAFKA_CLUSTER_DIR:-$root/target/kafka-cluster}
case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac
cache_root=${KAFKA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kafka-tasks/kafka}
if [ -f "$dir/base-port" ]; then
  base_port=$(cat "$dir/base-port")
else
  base_port=${KAFKA_BASE_PORT:-19092}
fi
heap_opts=${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}
# A test cluster's load is small and its two cores are shared: the serial collector and C1 alone
# start a node sooner and cost less CPU than G1 and C2 would.
jvm_opts=${KAFKA_JVM_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1}
start_timeout=${KAFKA_START_TIMEOUT:-120}
stop_timeout=${KAFKA_STOP_TIMEOUT:-30}
nodes=(1 2 3)     # broker and controller each; join_ports and the cluster's health are about these
extra_first=4     # added broker-only nodes are 4-9 (add-node), so their ports stay below base+100
extra_last=9
serving="" # set by wait_ready: the brokers found serving
scram_user=connected-test

die() { printf 'kafka-cluster: %s\n' "$*" >&2; exit 1; }
say() { printf 'kafka-cluster: %s\n' "$*" >&2; }

plain_port() { echo $((base_port + $1 - 1)); }
controller_port() { echo $((base_port + 100 + $1 - 1)); }
sasl_port() { echo $((base_port + 200 + $1 - 1)); }
ssl_port() { echo $((base_port + 300 + $1 - 1)); }
sasl_ssl_port() { echo $((base_port + 400 + $1 - 1)); }
extra_nodes() { # the added nodes laid out in this cluster, one a line
  local n
  for n in $(seq "$extra_first" "$extra_last"); do
    [ -f "$dir/node-$n.properties" ] && echo "$n"
  done
  return 0
}
all_nodes() { printf '%s\n' "${nodes[@]}"; extra_nodes; }
join_ports() { # join_ports FUNCTION: "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3"
  local out="" n
  for n in "${nodes[@]}"; do out+="${out:+,}127.0.0.1:$("$1" "$n")"; done
  echo "$out"
}

# --- Jars ---------------------------------------------------------------------------------------

need_tools() {
  if command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1; then
    return 0
  fi
  command -v apt-get >/dev/null 2>&1 || die "java 17+ and mvn are needed"
  say "installing Java 17 and Maven from Debian's packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null
}

lib_dir() { echo "$cache_root/$1/lib"; }

pom() { # pom VERSION: the pom that fetches Kafka VERSION
  cat <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by scripts/kafka-cluster.sh: the jars of Apache Kafka $1, fetched into lib/. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>kafka-tasks.test</groupId>
  <artifactId>kafka-cluster</artifactId>
  <version>$1</version>
  <packaging>pom</packaging>
  <dependencyManagement>
    <dependencies>
      <dependency>
        <groupId>org.apache.logging.log4j</groupId>
        <artifactId>log4j-bom</artifactId>
        <version>$LOG4J_VERSION</version>
        <type>pom</type>
        <scope>import</scope>
      </dependency>
    </dependencies>
  </dependencyManagement>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$1</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>$1</version>
      <exclusions>
        <!-- Only the Connect plugin-path tool needs it; it would add Jetty and Jersey. -->
        <exclusion>
          <groupId>org.apache.kafka</groupId>
          <artifactId>connect-runtime</artifactId>
        </exclusion>
      </exclusions>
    </dependency>
    <!-- Kafka logs through slf4j 1.7: this is its log4j2 binding (log4j-slf4j2-impl would need
         slf4j 2, and slf4j 1.7 would silently drop every line). -->
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
    </dependency>
  </dependencies>
</project>
EOF
}

# Downloads Kafka VERSION's jars once per machine: <cache>/<version>/lib, marked complete with the
# checksum of the pom that made it, so a changed pom fetches again. A lock keeps two runs apart.
# Every command that runs Kafka comes through here, so Java is checked here too.
fetch() {
  local version="$1" vdir="$cache_root/$1" sum
  need_tools
  sum=$(pom "$version" | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$vdir/lib/.complete" 2>/dev/null)" = "$sum" ]; then
    return 0
  fi
  mkdir -p "$vdir"
  (
    flock -w 900 9 || die "another fetch of Kafka $version holds $vdir/.lock"
    if [ "$(cat "$vdir/lib/.complete" 2>/dev/null)" = "$sum" ]; then
      exit 0
    fi
    pom "$version" >"$vdir/pom.xml"
    say "fetching Apache Kafka $version from Maven Central into $vdir/lib"
    rm -rf "$vdir/lib.tmp"
    if ! mvn -B -Dstyle.color=never -f "$vdir/pom.xml" "$DEPENDENCY_PLUGIN:copy-dependencies" \
      -DincludeScope=runtime -DoutputDirectory="$vdir/lib.tmp" >"$vdir/fetch.log" 2>&1; then
      grep -E '\[ERROR\]' "$vdir/fetch.log" | head -n 20 >&2 || true
      die "mvn could not fetch Kafka $version (4.0.1 and later are on Maven Central); see $vdir/fetch.log"
    fi
    ls "$vdir/lib.tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || die "no kafka_2.13 jar in $vdir/lib.tmp"
    echo "$sum" >"$vdir/lib.tmp/.complete"
    rm -rf "${vdir:?}/lib"
    mv "$vdir/lib.tmp" "$vdir/lib"
  ) 9>"$vdir/.lock"
}

# --- Versions -----------------------------------------------------------------------------------

cluster_version() {
  if [ -n "${KAFKA_VERSION:-}" ]; then
    echo "$KAFKA_VERSION"
  elif [ -f "$dir/version" ]; then
    cat "$dir/version"
  else
    echo "$KAFKA_PINNED_VERSION"
  fi
}

node_version() {
  if [ -n "${KAFKA_VERSION:-}" ]; then
    echo "$KAFKA_VERSION"
  elif [ -f "$dir/node-$1.version" ]; then
    cat "$dir/node-$1.version"
  elif [ -f "$dir/node-1.version" ]; then
    cat "$dir/node-1.version" # an added node runs what node 1 runs (after an upgrade: the new release)
  else
    cluster_version
  fi
}

# --- Running tools ------------------------------------------------------------------------------

tool_class() {
  case "$1" in
    topics) echo org.apache.kafka.tools.TopicCommand ;;
    configs) echo kafka.admin.ConfigCommand ;;
    reassign) echo org.apache.kafka.tools.reassign.ReassignPartitionsCommand ;;
    producer) echo org.apache.kafka.tools.VerifiableProducer ;;
    consumer) echo org.apache.kafka.tools.VerifiableConsumer ;;
    quorum) echo org.apache.kafka.tools.MetadataQuorumCommand ;;
    features) echo org.apache.kafka.tools.FeatureCommand ;;
    api-versions) echo org.apache.kafka.tools.BrokerApiVersionsCommand ;;
    cluster) echo org.apache.kafka.tools.ClusterTool ;;
    groups) echo org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
    log-dirs) echo org.apache.kafka.tools.LogDirsCommand ;;
    leader-election) echo org.apache.kafka.tools.LeaderElectionCommand ;;
    get-offsets) echo org.apache.kafka.tools.GetOffsetShell ;;
    delete-records) echo org.apache.kafka.tools.DeleteRecordsCommand ;;
    console-producer) echo org.apache.kafka.tools.ConsoleProducer ;;
    console-consumer) echo org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    storage) echo kafka.tools.StorageTool ;;
    *) echo "$1" ;;
  esac
}

# Tools log warnings and errors to stderr only, so their stdout stays parseable.
tools_log_config() { # tools_log_config VERSION -> path
  local file="$cache_root/$1/tools-log4j2.xml" tmp
  if [ ! -f "$file" ]; then
    tmp="$file.$BASHPID" # expanded here: in the redirection it would be cat's own pid
    cat >"$tmp" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="stderr" target="SYSTEM_ERR">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="WARN"><AppenderRef ref="stderr"/></Root>
  </Loggers>
</Configuration>
EOF
    mv "$tmp" "$file"
  fi
  echo "$file"
}

# Short-lived JVMs: compile with C1 only and a small serial heap, which halves a tool's start on
# two busy cores.
tool_java_opts=(-Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true)

# tool_command VERSION CLASS|ALIAS ARGS... : fills the array `cmd` with the java command line.
tool_command() {
  local version="$1" class
  class=$(tool_class "$2")
  shift 2
  fetch "$version"
  cmd=(java "${tool_java_opts[@]}" -Dlog4j2.configurationFile="$(tools_log_config "$version")"
    -cp "$(lib_dir "$version")/*" "$class" "$@")
}

run_tool() { # run_tool VERSION CLASS|ALIAS ARGS...
  local cmd
  tool_command "$@"
  "${cmd[@]}"
}

# --- Layout -------------------------------------------------------------------------------------

# A Kafka Uuid: 16 random bytes, URL-safe base64 without padding, not starting with '-' (Kafka's
# own rule, so that the id never reads as a command-line flag).
new_cluster_id() {
  local id
  for _ in $(seq 1 20); do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    case "$id" in -*) continue ;; esac
    echo "$id"
    return 0
  done
  die "could not make a cluster id"
}

write_node_properties() { # write_node_properties N: nodes 1-3 broker and controller, others broker only
  local n="$1" voters="" m roles=broker,controller controller_listener
  for m in "${nodes[@]}"; do voters+="${voters:+,}$m@127.0.0.1:$(controller_port "$m")"; done
  controller_listener=",CONTROLLER://127.0.0.1:$(controller_port "$n")"
  if [ "$n" -ge "$extra_first" ]; then
    roles=broker
    controller_listener=""
  fi
  cat >"$dir/node-$n.properties" <<EOF
# Written by scripts/kafka-cluster.sh: node $n ($roles) of a KRaft test cluster.
process.roles=$roles
node.id=$n
controller.quorum.voters=$voters
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$(plain_port "$n"),SASL_PLAINTEXT://127.0.0.1:$(sasl_port "$n")$controller_listener
advertised.listeners=PLAINTEXT://127.0.0.1:$(plain_port "$n"),SASL_PLAINTEXT://127.0.0.1:$(sasl_port "$n")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT
# Brokers replicate over PLAINTEXT; SCRAM is for clients (the connected mode must prove it works).
inter.broker.listener.name=PLAINTEXT
listener.name.sasl_plaintext.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
log.dirs=$dir/data/node-$n

# Explicit topics only: an auto-created topic would hide a test's mistake.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=3
# Internal topics on all three nodes, few partitions so the first group or transaction is quick.
offsets.topic.replication.factor=3
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
# Small thread pools: three nodes share two cores with the tests.
num.network.threads=2
num.io.threads=2
background.threads=2
num.replica.fetchers=1
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
# A stopped or killed node is noticed in seconds rather than the default nine.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=6000
EOF
}

write_server_log_config() {
  cat >"$dir/log4j2.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by scripts/kafka-cluster.sh: a node logs to stdout, which goes to node-N.log. -->
<Configuration status="WARN">
  <Appenders>
    <Console name="stdout" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="stdout"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
  </Loggers>
</Configuration>
EOF
}

# The SCRAM test user, created in every node's bootstrap metadata at format time. The password is
# new for each cluster and lives in 0600 files only.
write_scram_files() {
  local password
  password=$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24)
  (
    umask 077
    printf 'KAFKA_SCRAM_USER=%s\nKAFKA_SCRAM_PASSWORD=%s\n' "$scram_user" "$password" >"$dir/scram.env"
    cat >"$dir/client-scram.properties" <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$scram_user" password="$password";
EOF
  )
}

scram_password() { sed -n 's/^KAFKA_SCRAM_PASSWORD=//p' "$dir/scram.env"; }

# KEY=value, shell-quoted only when the value needs it, so the file reads as a dotenv file too.
kv() {
  case "$2" in
    *[!A-Za-z0-9_./:,@+=-]*) printf '%s=%q\n' "$1" "$2" ;;
    *) printf '%s=%s\n' "$1" "$2" ;;
  esac
}

write_env() {
  local f="$dir/cluster.env"
  {
    kv KAFKA_CLUSTER_DIR "$dir"
    kv KAFKA_CLUSTER_ID "$(cat "$dir/cluster.id")"
    kv KAFKA_CLUSTER_VERSION "$(cat "$dir/version")"
    kv KAFKA_BOOTSTRAP "$(join_ports plain_port)"
    kv KAFKA_SASL_BOOTSTRAP "$(join_ports sasl_port)"
    kv KAFKA_SSL_BOOTSTRAP "$(join_ports ssl_port)"
    kv KAFKA_SASL_SSL_BOOTSTRAP "$(join_ports sasl_ssl_port)"
    kv KAFKA_CA_FILE "$dir/tls/ca.pem"
    kv KAFKA_OTHER_CA_FILE "$dir/tls/other-ca.pem"
    kv KAFKA_CONTROLLERS "$(join_ports controller_port)"
    kv KAFKA_SCRAM_MECHANISM SCRAM-SHA-512
    kv KAFKA_SCRAM_FILE "$dir/scram.env"
    kv KAFKA_SCRAM_CLIENT_CONFIG "$dir/client-scram.properties"
  } >"$f.tmp"
  mv "$f.tmp" "$f"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

check_ports_free() { # check_ports_free N...
  local n p
  for n in "$@"; do
    for p in "$(plain_port "$n")" "$(controller_port "$n")" "$(sasl_port "$n")" "$(ssl_port "$n")" "$(sasl_ssl_port "$n")"; do
      if port_in_use "$p"; then
        die "port $p (node $n) is already in use on 127.0.0.1; set KAFKA_BASE_PORT to another base"
      fi
    done
  done
}

ports_free() { # ports_free N...: every port of nodes N... is free
  local n p
  for n in "$@"; do
    for p in "$(plain_port "$n")" "$(controller_port "$n")" "$(sasl_port "$n")" "$(ssl_port "$n")" "$(sasl_ssl_port "$n")"; do
      ! port_in_use "$p" || return 1
    done
  done
}

# A new cluster's base port: the one given, or with "auto" the first free of ten bases, so that two
# checkouts testing on one machine do not collide.
choose_base_port() {
  local b
  if [ "$base_port" = auto ]; then
    for b in 19092 20092 21092 22092 23092 24092 25092 26092 27092 28092; do
      base_port=$b
      if ports_free "${nodes[@]}"; then
        return 0
      fi
    done
    die "no free base port among 19092, 20092, … 28092; set KAFKA_BASE_PORT"
  fi
  case "$base_port" in
    '' | *[!0-9]*) die "KAFKA_BASE_PORT is a number or 'auto', not '$base_port'" ;;
  esac
  if [ "$base_port" -lt 1024 ] || [ "$base_port" -gt 65000 ]; then
    die "KAFKA_BASE_PORT must be 1024-65000, not $base_port"
  fi
  check_ports_free "${nodes[@]}"
}

# Lays out and formats a new cluster in $dir: three node configs, one cluster id, the SCRAM user.
create_cluster() {
  local version="$1" id n pids=() failed=0
  if is_ours; then
    rm -rf "$dir" # an earlier create that failed half-way
  elif [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
    die "$dir exists and holds no test cluster; remove it or set KAFKA_CLUSTER_DIR"
  fi
  choose_base_port
  fetch "$version"
  mkdir -p "$dir/data"
  echo "$base_port" >"$dir/base-port"
  echo "A Kafka test cluster made by scripts/kafka-cluster.sh; 'clean' removes it." >"$dir/$marker"
  id=$(new_cluster_id)
  write_server_log_config
  write_scram_files
  for n in "${nodes[@]}"; do write_node_properties "$n"; done
  say "formatting a new cluster $id with Kafka $version in $dir"
  # The three formats are independent: run them side by side.
  for n in "${nodes[@]}"; do
    run_tool "$version" storage format --cluster-id "$id" --config "$dir/node-$n.properties" \
      --add-scram "SCRAM-SHA-512=[name=$scram_user,password=$(scram_password)]" \
      >"$dir/format-node-$n.log" 2>&1 &
    pids+=($!)
  done
  for n in "${nodes[@]}"; do
    if ! wait "${pids[$((n - 1))]}"; then
      say "formatting node $n failed:"
      cat "$dir/format-node-$n.log" >&2
      failed=1
    fi
  done
  [ "$failed" = 0 ] || die "formatting failed; see $dir/format-node-*.log"
  echo "$version" >"$dir/version"
  # The id last: its presence is what marks the directory as a formatted cluster.
  echo "$id" >"$dir/cluster.id"
  write_env
}

# --- TLS ----------------------------------------------------------------------------------------

# The cluster's CA and the brokers' certificate (one for all: they share 127.0.0.1), made once per
# cluster; the keys stay in the cluster directory, mode 0600. Kafka reads the PEM keystore as is.
make_tls() {
  local t="$dir/tls"
  [ -f "$t/broker-keystore.pem" ] && [ -f "$t/other-ca.pem" ] && return 0
  command -v openssl >/dev/null 2>&1 || die "openssl is needed for the TLS listeners"
  mkdir -p "$t"
  (
    umask 077
    cd "$t"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3650 \
      -subj "/CN=kafka-tasks test CA" >/dev/null 2>&1
    openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.pem -days 3650 \
      -subj "/CN=kafka-tasks test CA that signed nothing" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr -subj "/CN=localhost" >/dev/null 2>&1
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >broker.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out broker.pem -days 3650 \
      -extfile broker.ext >/dev/null 2>&1
    # PKCS#8, unencrypted: what Kafka's PEM keystore reads without ssl.key.password.
    openssl pkcs8 -topk8 -nocrypt -in broker.key -out broker.pk8
    cat broker.pk8 broker.pem >broker-keystore.pem.tmp
    mv broker-keystore.pem.tmp broker-keystore.pem
  ) || die "could not make the TLS certificates in $t"
  chmod 644 "$t/ca.pem" "$t/other-ca.pem"
}

# Adds the SSL and SASL_SSL listeners to node N's properties, once (a cluster made before they
# existed gets them at its next start; the node must be stopped).
add_tls() { # add_tls N
  local n="$1" props="$dir/node-$1.properties" tmp
  grep -q '^ssl.keystore.location=' "$props" && return 0
  tmp=$(mktemp "$props.XXXXXX")
  sed -e "s#^listeners=PLAINTEXT://127.0.0.1:$(plain_port "$n"),#&SSL://127.0.0.1:$(ssl_port "$n"),SASL_SSL://127.0.0.1:$(sasl_ssl_port "$n"),#" \
    -e "s#^advertised.listeners=.*#&,SSL://127.0.0.1:$(ssl_port "$n"),SASL_SSL://127.0.0.1:$(sasl_ssl_port "$n")#" \
    -e "s#^listener.security.protocol.map=.*#&,SSL:SSL,SASL_SSL:SASL_SSL#" "$props" >"$tmp"
  {
    echo "# TLS for clients (scripts/kafka-cluster.sh): the CA is $dir/tls/ca.pem."
    echo "ssl.keystore.type=PEM"
    echo "ssl.keystore.location=$dir/tls/broker-keystore.pem"
    echo "listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512"
    echo "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
  } >>"$tmp"
  mv "$tmp" "$props"
}

# --- Processes ----------------------------------------------------------------------------------

pid_file() { echo "$dir/node-$1.pid"; }

# The pid of node N if that process is alive and is the node this directory started (its command
# line names this node's properties file), so a recycled pid is never signalled.
node_pid() {
  local f pid
  f=$(pid_file "$1")
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir/node-$1.properties" || return 1
  echo "$pid"
}

node_jvm_opts() {
  # shellcheck disable=SC2206 # lists of flags, split on purpose
  local heap=($heap_opts) jvm=($jvm_opts)
  printf '%s\n' "${heap[@]}" "${jvm[@]}" -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$dir/log4j2.xml"
}

launch_node() { # launch_node N: starts the JVM, returns at once
  local n="$1" version log opts
  version=$(node_version "$n")
  fetch "$version"
  make_tls
  add_tls "$n"
  check_ports_free "$n"
  log="$dir/node-$n.log"
  touch "$log"
  # The readiness check reads only what this start writes.
  stat -c %s "$log" >"$dir/node-$n.log-offset"
  printf '\n===== kafka-cluster: node %s starting with Kafka %s at %s =====\n' \
    "$n" "$version" "$(date -u +%FT%TZ)" >>"$log"
  mapfile -t opts < <(node_jvm_opts)
  rm -f "$(pid_file "$n")"
  # Its own session, so a terminal's Ctrl-C reaches the tests, not the cluster; the pid is written
  # by the process that then becomes the JVM.
  # shellcheck disable=SC2016 # $$ and $@ belong to the inner shell
  setsid bash -c 'echo "$$" >"$1"; shift; exec "$@"' _ "$(pid_file "$n")" \
    java "${opts[@]}" -cp "$(lib_dir "$version")/*" kafka.Kafka "$dir/node-$n.properties" \
    >>"$log" 2>&1 </dev/null &
  for _ in $(seq 1 50); do
    [ -s "$(pid_file "$n")" ] && break
    sleep 0.1
  done
  [ -s "$(pid_file "$n")" ] || die "node $n did not start; see $log"
  echo "$version" >"$dir/node-$n.version"
}

log_since_start() { # log_since_start N
  local off
  off=$(cat "$dir/node-$1.log-offset" 2>/dev/null || echo 0)
  tail -c +"$((off + 1))" "$dir/node-$1.log"
}

fail_node() { # fail_node N REASON
  say "node $1 $2; the end of its log ($dir/node-$1.log):"
  log_since_start "$1" | tail -n 30 >&2
  die "node $1 $2; see $dir/node-$1.log"
}

# Waits until nodes N... have started and every running node is a registered, unfenced broker
# (the metadata a client gets lists it) whose SCRAM listener accepts connections.
wait_ready() {
  local deadline=$((SECONDS + start_timeout)) n out ids want waiting
  while :; do
    waiting=""
    for n in "$@"; do
      node_pid "$n" >/dev/null || fail_node "$n" "exited while starting"
      log_since_start "$n" | grep -q 'Kafka Server started' || waiting="node $n to start"
    done
    want=""
    for n in $(all_nodes); do
      node_pid "$n" >/dev/null || continue
      want+="$n "
      [ -n "$waiting" ] || port_in_use "$(sasl_port "$n")" || waiting="node $n's SCRAM listener"
    done
    if [ -z "$waiting" ]; then
      out=$(run_tool "$(cluster_version)" api-versions --bootstrap-server "$(join_ports plain_port)" 2>/dev/null || true)
      ids=$(grep -o '(id: [0-9]*' <<<"$out" | tr -dc '0-9\n' | sort -n | tr '\n' ' ' || true)
      if [ "$ids" = "$want" ]; then
        serving=${want% }
        return 0
      fi
      waiting="brokers ${want% } to be registered (the cluster lists: ${ids:-none})"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      for n in "$@"; do
        log_since_start "$n" | grep -q 'Kafka Server started' \
          || fail_node "$n" "was not up within ${start_timeout}s"
      done
      die "not ready within ${start_timeout}s: waiting for $waiting; see $dir/node-*.log"
    fi
    sleep 1
  done
}

# Alive and not a zombie (a container's init may not reap an orphan at once).
alive() { ps -o stat= -p "$1" 2>/dev/null | grep -qv '^Z'; }

# SIGTERM to each node, then waits up to $KAFKA_STOP_TIMEOUT s for all of them; SIGKILL for the rest.
stop_nodes() { # stop_nodes N...
  local n pid deadline=$((SECONDS + stop_timeout)) left running=()
  for n in "$@"; do
    if pid=$(node_pid "$n"); then
      kill -TERM "$pid" 2>/dev/null || true
      running+=("$n:$pid")
    fi
  done
  [ "${#running[@]}" -gt 0 ] || return 0
  while :; do
    left=()
    for n in "${running[@]}"; do alive "${n#*:}" && left+=("$n"); done
    [ "${#left[@]}" -eq 0 ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
      for n in "${left[@]}"; do
        say "node ${n%%:*} still running ${stop_timeout}s after SIGTERM: SIGKILL"
        kill -KILL "${n#*:}" 2>/dev/null || true
      done
      for _ in $(seq 1 50); do
        left=()
        for n in "${running[@]}"; do alive "${n#*:}" && left+=("$n"); done
        [ "${#left[@]}" -eq 0 ] && break
        sleep 0.1
      done
      [ "${#left[@]}" -eq 0 ] || die "could not stop ${left[*]} (node:pid)"
      break
    fi
    sleep 0.2
  done
  for n in "${running[@]}"; do rm -f "$(pid_file "${n%%:*}")"; done
}

# --- Commands -----------------------------------------------------------------------------------

marker=.kafka-test-cluster
is_ours() { [ -f "$dir/$marker" ]; }
is_cluster() { is_ours && [ -f "$dir/cluster.id" ]; }
need_cluster() { is_cluster || die "no cluster in $dir (run: $0 start)"; }
check_node() {
  case "${1:-}" in
    1 | 2 | 3) ;;
    [4-9]) [ -f "$dir/node-$1.properties" ] || die "node $1 was not added (add-node $1)" ;;
    *) die "a node is 1, 2, 3 or an added one (4-9), not '${1:-}'" ;;
  esac
}
check_extra() {
  case "${1:-}" in [4-9]) ;; *) die "an added node is 4-9 (1-3 are the cluster's own), not '${1:-}'" ;; esac
}

# Nodes this run launched: if the run fails before they serve, they are stopped on the way out, so
# a failed start leaves no JVM behind (their logs stay).
launched=()
stop_launched_on_failure() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ "${#launched[@]}" -gt 0 ]; then
    say "stopping node(s) ${launched[*]} started by this failed run"
    stop_nodes "${launched[@]}" || true
  fi
}
trap stop_launched_on_failure EXIT

start_nodes() { # start_nodes N...: those not running, then waits for them
  local n
  for n in "$@"; do
    if node_pid "$n" >/dev/null; then
      say "node $n is already running"
    else
      launched+=("$n")
      launch_node "$n"
    fi
  done
  wait_ready "${launched[@]}"
  launched=()
}

# A broker-only node joining the running cluster: laid out and formatted with the cluster's id the
# first time (a repeat finds it laid out, and running or not, starts it if needed).
add_node() { # add_node N
  local n="$1" version
  if [ ! -f "$dir/node-$n.properties" ] || [ ! -f "$dir/data/node-$n/meta.properties" ]; then
    version=$(node_version "$n")
    fetch "$version"
    check_ports_free "$n"
    write_node_properties "$n"
    say "formatting broker-only node $n with Kafka $version"
    if ! run_tool "$version" storage format --cluster-id "$(cat "$dir/cluster.id")" --ignore-formatted \
      --config "$dir/node-$n.properties" >"$dir/format-node-$n.log" 2>&1; then
      cat "$dir/format-node-$n.log" >&2
      rm -f "$dir/node-$n.properties"
      die "formatting node $n failed; see $dir/format-node-$n.log"
    fi
  fi
  start_nodes "$n"
}

# Stops added node N and takes it out of the cluster's metadata (UnregisterBroker), so that the
# cluster shows the brokers it had before; its files go.
remove_node() { # remove_node N
  local n="$1" out
  [ -f "$dir/node-$n.properties" ] || return 0
  stop_nodes "$n"
  if ! out=$(run_tool "$(node_version 1)" cluster unregister --bootstrap-server "$(join_ports plain_port)" --id "$n" 2>&1); then
    # Already gone from the metadata is what we want; anything else is a failure to say.
    grep -qi 'not found\|BrokerIdNotRegistered\|not registered' <<<"$out" || die "unregistering node $n: $out"
  fi
  rm -rf "${dir:?}/data/node-$n"
  rm -f "$dir/node-$n".{properties,version,log,log-offset,pid,storage-gb} "$dir/format-node-$n.log"
  say "node $n stopped, unregistered and removed"
}

cmd_start() {
  local t0=$SECONDS
  if ! is_cluster; then
    create_cluster "$(cluster_version)"
  fi
  start_nodes "${nodes[@]}"
  write_env # a cluster made before the TLS listeners gains their lines
  say "three brokers up in $((SECONDS - t0))s: PLAINTEXT $(join_ports plain_port), SCRAM $(join_ports sasl_port)"
}

cmd_status() {
  local n pid all=0
  if ! is_cluster; then
    echo "no cluster in $dir"
    return 1
  fi
  echo "cluster $(cat "$dir/cluster.id") in $dir (formatted with Kafka $(cat "$dir/version"))"
  for n in "${nodes[@]}"; do
    if pid=$(node_pid "$n"); then
      printf 'node %s: running, pid %s, Kafka %s, PLAINTEXT %s, SCRAM %s, controller %s\n' "$n" "$pid" \
        "$(cat "$dir/node-$n.version")" "$(plain_port "$n")" "$(sasl_port "$n")" "$(controller_port "$n")"
    else
      printf 'node %s: stopped\n' "$n"
      all=1
    fi
  done
  # Added brokers: shown, but the exit status is about the three nodes the cluster cannot do without.
  for n in $(extra_nodes); do
    if pid=$(node_pid "$n"); then
      printf 'node %s: running, pid %s, Kafka %s, PLAINTEXT %s, SCRAM %s, broker only\n' "$n" "$pid" \
        "$(cat "$dir/node-$n.version")" "$(plain_port "$n")" "$(sasl_port "$n")"
    else
      printf 'node %s: stopped (added broker)\n' "$n"
    fi
  done
  return "$all"
}

cmd="${1:-}"
[ "$#" -gt 0 ] && shift
case "$cmd" in
  fetch) fetch "$(cluster_version)" ;;
  start) cmd_start ;;
  stop)
    if is_cluster; then
      mapfile -t every < <(all_nodes)
      stop_nodes "${every[@]}"
    fi
    ;;
  status) cmd_status ;;
  stop-node)
    check_node "${1:-}"
    need_cluster
    stop_nodes "$1"
    ;;
  start-node)
    check_node "${1:-}"
    need_cluster
    t0=$SECONDS
    start_nodes "$1"
    say "node $1 up in $((SECONDS - t0))s; brokers serving: $serving"
    ;;
  restart-node)
    check_node "${1:-}"
    need_cluster
    t0=$SECONDS
    stop_nodes "$1"
    start_nodes "$1"
    say "node $1 restarted in $((SECONDS - t0))s; brokers serving: $serving"
    ;;
  add-node)
    check_extra "${1:-}"
    need_cluster
    t0=$SECONDS
    add_node "$1"
    say "node $1 up in $((SECONDS - t0))s; brokers serving: $serving"
    ;;
  remove-node)
    check_extra "${1:-}"
    need_cluster
    remove_node "$1"
    ;;
  env)
    need_cluster
    cat "$dir/cluster.env"
    ;;
  tools)
    [ "$#" -gt 0 ] || die "usage: $0 tools CLASS|ALIAS [ARGS...]"
    # exec: a caller's timeout or signal reaches the JVM itself.
    tool_command "$(cluster_version)" "$@"
    exec "${cmd[@]}"
    ;;
  clean)
    if is_ours; then
      mapfile -t every < <(all_nodes)
      stop_nodes "${every[@]}"
      rm -rf "$dir"
    elif [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
      die "$dir holds no test cluster; not removing it"
    fi
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
