package secrets

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/haven-platform/haven/internal/iam"
)

// signAPI signs a Secrets Manager request as the SDK does, with the given
// headers set before signing; unsigned headers are added after.
func signAPI(t testing.TB, c iam.Credentials, endpoint, body string, signed, unsigned map[string]string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, endpoint+"/", strings.NewReader(body))
	for k, v := range signed {
		r.Header.Set(k, v)
	}
	sum := sha256.Sum256([]byte(body))
	cr := r.Clone(context.Background())
	cr.Header = r.Header.Clone()
	must(t, v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken},
		cr, hex.EncodeToString(sum[:]), "secretsmanager", testRegion, time.Now()))
	r.Header = cr.Header
	for k, v := range unsigned {
		r.Header.Set(k, v)
	}
	return r
}

// The operation is a header: a signature that does not cover X-Amz-Target
// would let anyone who relays a signed request turn, say, a DescribeSecret
// into a GetSecretValue. Such a request is refused, as AWS refuses it.
func TestUnsignedTargetIsRefused(t *testing.T) {
	e := newEnv(t)
	_, err := e.client(e.admin).CreateSecret(context.Background(), secretsCreate("db", dbValue1))
	must(t, err)
	h := e.srv.Handler()
	body := `{"SecretId":"db"}`
	ct := map[string]string{"Content-Type": jsonContentType}
	for name, r := range map[string]*http.Request{
		"target added unsigned": signAPI(t, e.admin, e.srv.Endpoint(), body, ct,
			map[string]string{"X-Amz-Target": "secretsmanager.GetSecretValue"}),
		"no target at all": signAPI(t, e.admin, e.srv.Endpoint(), body, ct, nil),
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		var out struct {
			Type         string `json:"__type"`
			Message      string `json:"message"`
			SecretString string
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &out)
		if rec.Code != http.StatusBadRequest || out.Type != iam.CodeInvalidSignature || out.SecretString != "" {
			t.Errorf("%s: status %d %s %q, want 400 %s", name, rec.Code, out.Type, out.Message, iam.CodeInvalidSignature)
		}
		if !strings.Contains(out.Message, "x-amz-target") {
			t.Errorf("%s: message %q does not say x-amz-target must be signed", name, out.Message)
		}
	}
	// The same request with the target signed succeeds: the refusal is the rule, not the test.
	signed := map[string]string{"Content-Type": jsonContentType, "X-Amz-Target": "secretsmanager.GetSecretValue"}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, signAPI(t, e.admin, e.srv.Endpoint(), body, signed, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("signed request: %d %s", rec.Code, rec.Body)
	}
}
