// Package gosdk holds the tests of the official Huawei Cloud Go SDK
// (github.com/huaweicloud/huaweicloud-sdk-go-v3, services/kafka/v2) against the kafka-tasks
// binary named by KAFKA_TASKS_BIN (default ../../target/debug/kafka-tasks).
//
// The SDK is used unmodified, pointed at http://127.0.0.1:PORT with an explicit endpoint and
// BasicCredentials carrying the project id, so it never asks IAM for anything. It signs
// differently from the Python and Node.js SDKs (neither content-type nor host among the signed
// headers, a newline after every JSON body, empty query values sent as a bare name), which is
// why it is worth a suite of its own.
//
// Effects are checked with a second view that shares nothing with the SDK: plain net/http
// requests authenticated by an X-Auth-Token that `kafka-tasks token create` issues, decoded
// into maps so that the wire types (a string task_count, a numeric job_count) show.
package gosdk
