package gosdk

// The test kit: the server process, SDK clients pointed at it, a recorder of what the SDK sends
// and receives, the token view, and the waits. One server per test group, each on its own SQLite
// database in a temporary directory.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/auth/basic"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/auth/signer/algorithm"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/config"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/region"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/request"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/sdkerr"
	kafka "github.com/huaweicloud/huaweicloud-sdk-go-v3/services/kafka/v2"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/kafka/v2/model"
)

const (
	project      = "0123456789abcdef0123456789abcdef"
	otherProject = "fedcba9876543210fedcba9876543210"
	unknownIID   = "11111111-2222-3333-4444-555555555555"
)

var (
	hex32   = regexp.MustCompile(`^[0-9a-f]{32}$`)
	isoTime = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$`)
)

// TestMain gives the SDK a home of its own: on its first client it writes an application id
// under ~/.huaweicloud and sends it in User-Agent. The tests keep that default behaviour without
// writing into the real home.
func TestMain(m *testing.M) {
	home, err := os.MkdirTemp("", "kafka-tasks-go-home-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Setenv("HOME", home)
	code := m.Run()
	os.RemoveAll(home)
	os.Exit(code)
}

func binary() string {
	if bin := os.Getenv("KAFKA_TASKS_BIN"); bin != "" {
		return bin
	}
	return filepath.Join("..", "..", "target", "debug", "kafka-tasks")
}

// Credential is an access key as `kafka-tasks credentials create` prints it (and as `serve`
// writes the first admin key to initial-credential.json).
type Credential struct {
	AccessKey string `json:"access_key"`
	SecretKey string `json:"secret_key"`
	ProjectID string `json:"project_id"`
	UserID    string `json:"user_id"`
	UserName  string `json:"user_name"`
	Role      string `json:"role"`
}

// Server is the real binary, serving on a free loopback port.
type Server struct {
	URL   string
	Admin Credential
	// signing is the mode of the clients this server's tests make (one of signingModes).
	signing string
	db      string
	keyFile string
	cmd     *exec.Cmd
	logMu   sync.Mutex
	logTail []string
}

// startServer starts `kafka-tasks serve` on a fresh database and stops it when the test ends;
// a failed test gets the server's last log lines.
func startServer(t *testing.T, flags ...string) *Server {
	t.Helper()
	dir := t.TempDir()
	s := &Server{db: "sqlite:" + filepath.Join(dir, "go-sdk.db"), keyFile: filepath.Join(dir, "master.key")}
	args := append([]string{"serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--poll-ms", "20",
		"--metrics-listen", "off", "--database", s.db, "--master-key-file", s.keyFile}, flags...)
	s.cmd = exec.Command(binary(), args...)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", binary(), err)
	}
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		if t.Failed() {
			s.logMu.Lock()
			t.Logf("last server log lines:\n%s", strings.Join(s.logTail, "\n"))
			s.logMu.Unlock()
		}
	})

	addr := make(chan string, 1)
	go func() {
		// Reads the log to its end: a server whose stderr pipe fills up would block.
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			s.logMu.Lock()
			s.logTail = append(s.logTail, line)
			if len(s.logTail) > 40 {
				s.logTail = s.logTail[1:]
			}
			s.logMu.Unlock()
			var rec struct {
				Message string `json:"message"`
				Addr    string `json:"addr"`
			}
			if !sent && json.Unmarshal([]byte(line), &rec) == nil && rec.Message == "listening" {
				addr <- rec.Addr
				sent = true
			}
		}
		close(addr)
	}()
	select {
	case a, ok := <-addr:
		if !ok {
			t.Fatal("kafka-tasks exited before listening")
		}
		s.URL = "http://" + a
	case <-time.After(20 * time.Second):
		t.Fatal("kafka-tasks did not start within 20 s")
	}

	// On an empty database `serve` makes an admin key and writes it beside the master key.
	raw, err := os.ReadFile(filepath.Join(dir, "initial-credential.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &s.Admin); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *Server) run(t *testing.T, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(binary(), args...).Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("kafka-tasks %s: %v\n%s", strings.Join(args, " "), err, exit.Stderr)
		}
		t.Fatalf("kafka-tasks %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// credential makes an access key with `kafka-tasks credentials create`.
func (s *Server) credential(t *testing.T, user, role, projectID string) Credential {
	t.Helper()
	out := s.run(t, "credentials", "create", "--project-id", projectID, "--user-name", user, "--role", role,
		"--database", s.db, "--master-key-file", s.keyFile)
	var c Credential
	if err := json.Unmarshal(out, &c); err != nil {
		t.Fatalf("credentials create printed %q: %v", out, err)
	}
	return c
}

// addKernel adds a newer kernel build of an engine version, so that latest_version moves ahead
// of the instances on it.
func (s *Server) addKernel(t *testing.T, engineVersion, build string) {
	t.Helper()
	s.run(t, "kernels", "add", "--engine-version", engineVersion, "--build", build, "--database", s.db)
}

// signingModes are the Go SDK's signing modes: its four algorithms, and derived AK/SK
// (V11-HMAC-SHA256), which credentials with a derived predicate use whatever the algorithm.
var signingModes = []string{"hmac-sha256", "hmac-sm3", "ecdsa-p256-sha256", "sm2-sm3", "v11-hmac-sha256"}

var signingAlgorithms = map[string]algorithm.SigningAlgorithm{
	"hmac-sha256":       algorithm.HmacSHA256,
	"hmac-sm3":          algorithm.HmacSM3,
	"ecdsa-p256-sha256": algorithm.EcdsaP256SHA256,
	"sm2-sm3":           algorithm.SM2SM3,
}

// What the server expects in a V11 credential scope by default (`serve --signing-region`,
// `--signing-service`).
const v11Region, v11Service = "cn-north-4", "dms"

// forEachSigning runs test once per signing mode, as a subtest named after it, on servers whose
// clients sign that way. The server checks every signature in one place whatever the operation,
// so the suites that send each shape of signed request (a query string, a JSON body on POST and
// PUT, a DELETE) run in every mode, and the others in the default mode only (withDefaultSigning).
func forEachSigning(t *testing.T, test func(t *testing.T, signing string)) {
	for _, mode := range signingModes {
		t.Run(mode, func(t *testing.T) { test(t, mode) })
	}
}

// withDefaultSigning runs test once, in the SDK's default mode, as a subtest named after it.
func withDefaultSigning(t *testing.T, test func(t *testing.T, signing string)) {
	mode := signingModes[0]
	t.Run(mode, func(t *testing.T) { test(t, mode) })
}

// clientOptions choose how a client signs; the zero value is the SDK's default (SDK-HMAC-SHA256).
type clientOptions struct {
	algorithm algorithm.SigningAlgorithm
	projectID string    // the project sent, when not the credential's own
	recorder  *Recorder // sees every exchange
}

// client is the official SDK's KafkaClient for this server: an explicit endpoint and the
// project id in the credentials, no region, so no IAM call is ever made.
func (s *Server) client(t *testing.T, cred Credential) *kafka.KafkaClient {
	return s.clientWith(t, cred, clientOptions{})
}

func (s *Server) clientWith(t *testing.T, cred Credential, o clientOptions) *kafka.KafkaClient {
	t.Helper()
	projectID := cred.ProjectID
	if o.projectID != "" {
		projectID = o.projectID
	}
	derived := o.algorithm == "" && s.signing == "v11-hmac-sha256"
	credentials := basic.NewCredentialsBuilder().WithAk(cred.AccessKey).WithSk(cred.SecretKey).
		WithProjectId(projectID)
	if derived {
		credentials = credentials.WithDerivedPredicate(func(*request.DefaultHttpRequest) bool { return true })
	}
	auth, err := credentials.SafeBuild()
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.DefaultHttpConfig().WithTimeout(20 * time.Second)
	if alg := signingAlgorithms[s.signing]; o.algorithm == "" && alg != "" {
		cfg = cfg.WithSigningAlgorithm(alg)
	}
	if o.algorithm != "" {
		cfg = cfg.WithSigningAlgorithm(o.algorithm)
	}
	if o.recorder != nil {
		cfg = cfg.WithHttpRoundTripper(o.recorder)
	}
	builder := kafka.KafkaClientBuilder().WithCredential(auth).WithHttpConfig(cfg)
	if derived {
		// The region's id and the builder's service name make the credential scope; the Kafka
		// client names no service of its own, so the caller does.
		builder = builder.WithRegion(region.NewRegion(v11Region, s.URL)).WithDerivedAuthServiceName(v11Service)
	} else {
		builder = builder.WithEndpoints([]string{s.URL})
	}
	hc, err := builder.SafeBuild()
	if err != nil {
		t.Fatal(err)
	}
	return kafka.NewKafkaClient(hc)
}

// Exchange is one request the SDK sent and the answer it got, as they were on the wire.
type Exchange struct {
	Host     string
	Method   string
	Path     string // as sent (escaped)
	RawQuery string
	Header   http.Header
	Body     []byte
	Status   int
	RespBody []byte
}

// Recorder is an http.RoundTripper for the SDK that keeps a copy of every exchange.
type Recorder struct {
	mu        sync.Mutex
	exchanges []Exchange
}

func (r *Recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	ex := Exchange{Host: req.URL.Host, Method: req.Method, Path: req.URL.EscapedPath(), RawQuery: req.URL.RawQuery,
		Header: req.Header.Clone()}
	if req.Body != nil {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body.Close()
		ex.Body = body
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	ex.Status, ex.RespBody = resp.StatusCode, body
	r.mu.Lock()
	r.exchanges = append(r.exchanges, ex)
	r.mu.Unlock()
	return resp, nil
}

// last is the latest exchange.
func (r *Recorder) last(t *testing.T) Exchange {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.exchanges) == 0 {
		t.Fatal("the SDK sent nothing")
	}
	return r.exchanges[len(r.exchanges)-1]
}

// all is every exchange so far, oldest first.
func (r *Recorder) all() []Exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Exchange(nil), r.exchanges...)
}

// View reads the server over plain HTTP with an X-Auth-Token: no SDK code, no AK/SK signing.
type View struct {
	url     string
	project string
	token   string
}

// view authenticates as cred with a token from `kafka-tasks token create`.
func (s *Server) view(t *testing.T, cred Credential) *View {
	t.Helper()
	out := s.run(t, "token", "create", "--access-key", cred.AccessKey, "--database", s.db,
		"--master-key-file", s.keyFile)
	return &View{url: s.URL, project: cred.ProjectID, token: strings.TrimSpace(string(out))}
}

// call sends a request under /v2/{project}/ and decodes the answer (numbers kept as json.Number).
func (v *View) call(t *testing.T, method, path string, query url.Values) (int, map[string]any) {
	t.Helper()
	u := v.url + "/v2/" + v.project + "/" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Auth-Token", v.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) == 0 {
		return resp.StatusCode, nil
	}
	body := map[string]any{}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("%s %s answered %d with %q: %v", method, path, resp.StatusCode, raw, err)
	}
	return resp.StatusCode, body
}

// get is call for a GET that must succeed.
func (v *View) get(t *testing.T, path string, query url.Values) map[string]any {
	t.Helper()
	status, body := v.call(t, http.MethodGet, path, query)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %v", path, status, body)
	}
	return body
}

// taskIDs are the ids of a task or job list in the order given.
func taskIDs(t *testing.T, body map[string]any, key string) []string {
	t.Helper()
	items, ok := body[key].([]any)
	if !ok {
		t.Fatalf("%q is not a list in %v", key, body)
	}
	ids := make([]string, 0, len(items))
	for _, it := range items {
		ids = append(ids, it.(map[string]any)["id"].(string))
	}
	return ids
}

// serviceError is err as the SDK's error type, with the status and DMS code expected.
func serviceError(t *testing.T, err error, status int, code string) *sdkerr.ServiceResponseError {
	t.Helper()
	return checkServiceError(t, err, status, code, func(c string) bool { return c == code })
}

// serviceErrorLike is serviceError for a code matching a pattern, where the contract names only
// a family of codes.
func serviceErrorLike(t *testing.T, err error, status int, pattern string) *sdkerr.ServiceResponseError {
	t.Helper()
	return checkServiceError(t, err, status, pattern, regexp.MustCompile(pattern).MatchString)
}

func checkServiceError(t *testing.T, err error, status int, want string, ok func(string) bool) *sdkerr.ServiceResponseError {
	t.Helper()
	if err == nil {
		t.Fatalf("expected %d %s, the call succeeded", status, want)
	}
	var se *sdkerr.ServiceResponseError
	if !errors.As(err, &se) {
		t.Fatalf("expected an sdkerr.ServiceResponseError, got %T: %v", err, err)
	}
	if se.StatusCode != status || !ok(se.ErrorCode) {
		t.Fatalf("expected %d %s, got %d %q: %s", status, want, se.StatusCode, se.ErrorCode, se.ErrorMessage)
	}
	if !hex32.MatchString(se.RequestId) {
		t.Fatalf("request id %q is not 32 hex characters", se.RequestId)
	}
	return se
}

// must fails the test on an SDK error, printing the error the SDK decoded.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("SDK call failed: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

func itoa(n int) string { return strconv.Itoa(n) }

// atoi reads a count the server sends as a string (task_count).
func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%q is not a count: %v", s, err)
	}
	return n
}

// deref is *p, or the zero value for nil (the SDK's responses are all pointers).
func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// stamp is t as YYYYMMDDHHmmss in UTC, the format of time filters and execute_at queries.
func stamp(at time.Time) string { return at.UTC().Format("20060102150405") }

// waitFor polls check every 20 ms until it holds, for at most 20 s.
func waitFor(t *testing.T, what string, check func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !check() {
		if time.Now().After(deadline) {
			t.Fatalf("%s never held", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func instanceStatus(c *kafka.KafkaClient, iid string) string {
	res, err := c.ShowInstance(&model.ShowInstanceRequest{InstanceId: iid})
	if err != nil {
		return ""
	}
	return deref(res.Status)
}

func taskStatus(c *kafka.KafkaClient, iid, tid string) string {
	res, err := c.ShowBackgroundTask(&model.ShowBackgroundTaskRequest{InstanceId: iid, TaskId: tid})
	if err != nil || res.Tasks == nil || len(*res.Tasks) != 1 {
		return ""
	}
	return deref((*res.Tasks)[0].Status)
}

// finish waits for the task to succeed and the instance to be RUNNING again.
func finish(t *testing.T, c *kafka.KafkaClient, iid, tid string) {
	t.Helper()
	waitFor(t, "task "+tid+" SUCCESS", func() bool { return taskStatus(c, iid, tid) == "SUCCESS" })
	waitFor(t, "instance "+iid+" RUNNING", func() bool { return instanceStatus(c, iid) == "RUNNING" })
}

func engineBody(name string) *model.CreateInstanceByEngineReq {
	return &model.CreateInstanceByEngineReq{
		Name: name, Engine: model.GetCreateInstanceByEngineReqEngineEnum().KAFKA, EngineVersion: "2.7",
		BrokerNum: 3, StorageSpace: 300, ProductId: "c6.2u4g.cluster", VpcId: "vpc-1",
		SecurityGroupId: "sg-1", SubnetId: "subnet-1", AvailableZones: []string{"az1"},
		StorageSpecCode: model.GetCreateInstanceByEngineReqStorageSpecCodeEnum().DMS_PHYSICAL_STORAGE_HIGH_V2,
	}
}

// createInstance creates a Kafka 2.7 instance with CreateInstanceByEngine and waits until it runs.
func createInstance(t *testing.T, c *kafka.KafkaClient, name string) string {
	t.Helper()
	res, err := c.CreateInstanceByEngine(&model.CreateInstanceByEngineRequest{
		Engine: model.GetCreateInstanceByEngineRequestEngineEnum().KAFKA, Body: engineBody(name)})
	must(t, err)
	iid := deref(res.InstanceId)
	if len(iid) != 36 {
		t.Fatalf("instance_id %q", iid)
	}
	waitFor(t, "instance "+iid+" RUNNING", func() bool { return instanceStatus(c, iid) == "RUNNING" })
	return iid
}

// listAll is ListBackgroundTasks for the first 100 tasks.
func listAll(t *testing.T, c *kafka.KafkaClient, iid string) *model.ListBackgroundTasksResponse {
	t.Helper()
	res, err := c.ListBackgroundTasks(&model.ListBackgroundTasksRequest{InstanceId: iid, Start: ptr[int32](1),
		Limit: ptr[int32](100)})
	must(t, err)
	return res
}

func tasksOf(res *model.ListBackgroundTasksResponse) []model.ListBackgroundTasksRespTasks {
	if res.Tasks == nil {
		return nil
	}
	return *res.Tasks
}

func jobsOf(res *model.ListScheduledTasksResponse) []model.ScheduledTaskEntity {
	if res.Jobs == nil {
		return nil
	}
	return *res.Jobs
}
