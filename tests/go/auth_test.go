package gosdk

// How the Go SDK signs, and the server's answers to it: SDK-HMAC-SHA256 and SDK-HMAC-SM3 as
// the SDK computes them, its date window, values that need escaping, and refusals decoded into
// the SDK's error type.

import (
	"net/http"
	"path"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/auth/basic"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/auth/signer/algorithm"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/config"
	kafka "github.com/huaweicloud/huaweicloud-sdk-go-v3/services/kafka/v2"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/kafka/v2/model"
)

func TestSigning(t *testing.T) {
	t.Parallel()
	s := startServer(t, "--time-scale", "0")
	rec := &Recorder{}
	c := s.clientWith(t, s.Admin, clientOptions{recorder: rec})
	v := s.view(t, s.Admin)
	iid := createInstance(t, c, "go-sdk-auth")
	list := func(c *kafka.KafkaClient) (*model.ListBackgroundTasksResponse, error) {
		return c.ListBackgroundTasks(&model.ListBackgroundTasksRequest{InstanceId: iid})
	}
	autoTopic := func(t *testing.T, c *kafka.KafkaClient, enable bool) {
		t.Helper()
		res, err := c.UpdateInstanceAutoCreateTopic(&model.UpdateInstanceAutoCreateTopicRequest{InstanceId: iid,
			Body: &model.UpdateInstanceAutoCreateTopicReq{EnableAutoTopic: enable}})
		must(t, err)
		if res.HttpStatusCode != http.StatusOK || deref(res.EnableAutoTopic) != enable {
			t.Fatalf("UpdateInstanceAutoCreateTopic: %v", res)
		}
		waitFor(t, "auto topic applied", func() bool {
			shown, err := c.ShowInstance(&model.ShowInstanceRequest{InstanceId: iid})
			return err == nil && deref(shown.EnableAutoTopic) == enable && deref(shown.Status) == "RUNNING"
		})
	}

	t.Run("SDK-HMAC-SHA256 over user-agent, x-project-id and x-sdk-date; content-type unsigned", func(t *testing.T) {
		_, err := list(c)
		must(t, err)
		ex := rec.last(t)
		auth := regexp.MustCompile(`^SDK-HMAC-SHA256 Access=` + s.Admin.AccessKey +
			`, SignedHeaders=user-agent;x-project-id;x-sdk-date, Signature=[0-9a-f]{64}$`)
		if !auth.MatchString(ex.Header.Get("Authorization")) || ex.Header.Get("X-Project-Id") != project ||
			ex.Header.Get("Content-Type") != "application/json" || ex.Status != http.StatusOK {
			t.Fatalf("the SDK sent %v and got %d", ex.Header, ex.Status)
		}

		// The SDK's JSON encoder ends every body with a newline; the signature covers it, and the
		// server reads the body as sent.
		autoTopic(t, c, true)
		posted := 0
		for _, ex := range rec.all() {
			if ex.Method == http.MethodPost && strings.HasSuffix(ex.Path, "/autotopic") {
				posted++
				if string(ex.Body) != "{\"enable_auto_topic\":true}\n" || ex.Status != http.StatusOK {
					t.Fatalf("autotopic: sent %q, got %d", ex.Body, ex.Status)
				}
			}
		}
		if posted != 1 {
			t.Fatalf("%d autotopic requests recorded", posted)
		}
		// No region was given, so the SDK resolved nothing: every request it made came here.
		for _, ex := range rec.all() {
			if "http://"+ex.Host != s.URL {
				t.Fatalf("the SDK called %s %s%s", ex.Method, ex.Host, ex.Path)
			}
		}

		// IgnoreContentTypeForGetRequest: the SDK's option to send a GET without Content-Type.
		noType := &Recorder{}
		cred, err := basic.NewCredentialsBuilder().WithAk(s.Admin.AccessKey).WithSk(s.Admin.SecretKey).
			WithProjectId(project).SafeBuild()
		must(t, err)
		hc, err := kafka.KafkaClientBuilder().WithEndpoints([]string{s.URL}).WithCredential(cred).
			WithHttpConfig(config.DefaultHttpConfig().WithIgnoreContentTypeForGetRequest(true).
				WithHttpRoundTripper(noType)).SafeBuild()
		must(t, err)
		_, err = list(kafka.NewKafkaClient(hc))
		must(t, err)
		if ex := noType.last(t); ex.Header.Get("Content-Type") != "" {
			t.Fatalf("Content-Type %q sent", ex.Header.Get("Content-Type"))
		}
	})

	t.Run("SDK-HMAC-SM3 for reads and for a body; a wrong secret is refused", func(t *testing.T) {
		sm3 := &Recorder{}
		reader := s.clientWith(t, s.credential(t, "go-sm3-reader", "readonly", project),
			clientOptions{algorithm: algorithm.HmacSM3, recorder: sm3})
		res, err := list(reader)
		must(t, err)
		if atoi(t, deref(res.TaskCount)) < 1 {
			t.Fatalf("SM3 list: %v", res)
		}
		if auth := sm3.last(t).Header.Get("Authorization"); !strings.HasPrefix(auth, "SDK-HMAC-SM3 Access=") {
			t.Fatalf("Authorization %q", auth)
		}
		writer := s.clientWith(t, s.credential(t, "go-sm3-writer", "operator", project),
			clientOptions{algorithm: algorithm.HmacSM3, recorder: sm3})
		autoTopic(t, writer, false)

		forged := s.credential(t, "go-sm3-forged", "admin", project)
		forged.SecretKey = strings.Repeat("x", 40)
		_, err = list(s.clientWith(t, forged, clientOptions{algorithm: algorithm.HmacSM3}))
		serviceError(t, err, 401, "APIGW.0301")
	})

	t.Run("X-Sdk-Date is accepted within 15 minutes of the server's clock", func(t *testing.T) {
		for _, tc := range []struct {
			offset time.Duration
			ok     bool
		}{{-14 * time.Minute, true}, {14 * time.Minute, true}, {-20 * time.Minute, false}, {20 * time.Minute, false}} {
			// The SDK signs with an X-Sdk-Date it is given instead of its clock's.
			dated := s.client(t, s.Admin)
			dated.HcClient.WithExtraHeaders(map[string]string{
				"X-Sdk-Date": time.Now().Add(tc.offset).UTC().Format("20060102T150405Z")})
			_, err := list(dated)
			if tc.ok {
				must(t, err)
			} else {
				se := serviceError(t, err, 401, "APIGW.0301")
				if !strings.HasPrefix(se.ErrorMessage, "Incorrect IAM authentication information") {
					t.Fatalf("error_msg %q", se.ErrorMessage)
				}
			}
		}
	})

	t.Run("values that need escaping are signed as the server reads them", func(t *testing.T) {
		// The SDK percent-encodes the query with url.Values, then sends an empty value as a bare
		// name; it signs every value with its own strict encoder. Each of these reaches the handler
		// (a DMS error about the value), never a signature refusal.
		for _, value := range []string{"", "2024 01", "a+b", "x/y", "a=b", "a&b", "%41", "a%", "~*'()!", "ä"} {
			_, err := c.ListBackgroundTasks(&model.ListBackgroundTasksRequest{InstanceId: iid, BeginTime: ptr(value)})
			serviceError(t, err, 400, "DMS.00400142")
		}
		if q := rec.last(t); q.RawQuery != "begin_time=%C3%A4" {
			t.Fatalf("query sent: %q", q.RawQuery)
		}
		_, err := c.UpdateScheduledTask(&model.UpdateScheduledTaskRequest{InstanceId: iid, TaskId: zeros,
			Status: ptr("")})
		serviceError(t, err, 400, "DMS.00400062")
		if q := rec.last(t); q.RawQuery != "status" {
			t.Fatalf("an empty status went as %q, not as a bare name", q.RawQuery)
		}
		// Path segments go as Go's url package escapes them ($ & + , : ; = @ stay raw); the SDK
		// signs them percent-encoded.
		sent := map[string]bool{}
		for _, id := range []string{"nope!", "a b", "a:b", "a@b", "a;b", "a,b", "a'b", "(x)", "a*b", "a+b", "a=b",
			"a$b", "a&b", "a?b", "a#b", "a%2Fb", "ü", ".."} {
			_, err := c.ShowBackgroundTask(&model.ShowBackgroundTaskRequest{InstanceId: iid, TaskId: id})
			serviceError(t, err, 400, "DMS.00400070")
			sent[path.Base(rec.last(t).Path)] = true
		}
		if !sent["a:b"] || !sent["a&b"] || !sent["nope%21"] {
			t.Fatalf("segments sent: %v", sent)
		}
	})

	t.Run("a wrong secret, a weak role, another project", func(t *testing.T) {
		forged := s.credential(t, "go-forged", "admin", project)
		forged.SecretKey = strings.Repeat("x", 40)
		_, err := list(s.client(t, forged))
		serviceError(t, err, 401, "APIGW.0301")

		readerCred := s.credential(t, "go-reader", "readonly", project)
		reader := s.client(t, readerCred)
		res, err := reader.ListBackgroundTasks(&model.ListBackgroundTasksRequest{InstanceId: iid, Limit: ptr[int32](1)})
		must(t, err)
		victim := deref(tasksOf(res)[0].Id)
		_, err = reader.DeleteBackgroundTask(&model.DeleteBackgroundTaskRequest{InstanceId: iid, TaskId: victim})
		se := serviceError(t, err, 403, "DMS.00403003")
		if se.ErrorMessage != "This role does not have the permissions to perform this operation." {
			t.Fatalf("error_msg %q", se.ErrorMessage)
		}
		if status, body := v.call(t, http.MethodGet, "instances/"+iid+"/tasks/"+victim, nil); status != 200 {
			t.Fatalf("the task after a refused delete: %d %v", status, body)
		}

		// A key of another project, on its own project's path: the instance is simply not there.
		stranger := s.client(t, s.credential(t, "go-stranger", "admin", otherProject))
		_, err = list(stranger)
		serviceError(t, err, 404, "DMS.00404022")
		_, err = stranger.DeleteBackgroundTask(&model.DeleteBackgroundTaskRequest{InstanceId: iid, TaskId: victim})
		serviceError(t, err, 404, "DMS.00404022")

		// This project's key, sent for another project's path: the gateway refuses it.
		_, err = list(s.clientWith(t, s.Admin, clientOptions{projectID: otherProject}))
		serviceError(t, err, 403, "APIGW.0302")
	})

	t.Run("the SDK's asymmetric algorithms sign with a key pair derived from the SK", func(t *testing.T) {
		// SDK-ECDSA-P256-SHA256 and SDK-SM2-SM3: the server derives the same key pair from the
		// stored secret and verifies the DER signature; another secret's pair is refused.
		cred := s.credential(t, "go-asymmetric", "admin", project)
		for _, alg := range []algorithm.SigningAlgorithm{algorithm.EcdsaP256SHA256, algorithm.SM2SM3} {
			rec := &Recorder{}
			res, err := list(s.clientWith(t, cred, clientOptions{algorithm: alg, recorder: rec}))
			must(t, err)
			if res.HttpStatusCode != http.StatusOK {
				t.Fatalf("%s: %v", alg, res)
			}
			want := map[algorithm.SigningAlgorithm]string{algorithm.EcdsaP256SHA256: "SDK-ECDSA-P256-SHA256 ",
				algorithm.SM2SM3: "SDK-SM2-SM3 "}[alg]
			if got := rec.last(t).Header.Get("Authorization"); !strings.HasPrefix(got, want) {
				t.Fatalf("%s signed %q", alg, got)
			}
			forged := cred
			forged.SecretKey = strings.Repeat("x", 40)
			_, err = list(s.clientWith(t, forged, clientOptions{algorithm: alg}))
			serviceError(t, err, 401, "APIGW.0301")
		}
	})
}
