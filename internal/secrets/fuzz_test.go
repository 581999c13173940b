package secrets

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

func (s *Store) snapshot() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, _ := json.Marshal(s.st)
	return b
}

// FuzzSecretsAPI sends correctly signed requests with arbitrary operations, content
// types and bodies: the server never panics, answers 200 or a clean 4xx JSON error,
// and a refused request changes neither the in-memory nor the on-disk state.
func FuzzSecretsAPI(f *testing.F) {
	e := newEnv(f)
	_, err := e.client(e.admin).CreateSecret(context.Background(), secretsCreate("db", dbValue1))
	must(f, err)
	h := e.srv.Handler()
	statePath := filepath.Join(e.dir, StateFile)

	f.Add("GetSecretValue", "application/x-amz-json-1.1", `{"SecretId":"db"}`)
	f.Add("GetSecretValue", "application/x-amz-json-1.1", `{"SecretId":"db","VersionStage":"AWSPENDING"}`)
	f.Add("PutSecretValue", "application/x-amz-json-1.1", `{"SecretId":"db","SecretString":"x","ClientRequestToken":"short"}`)
	f.Add("PutSecretValue", "application/x-amz-json-1.1", `{"SecretId":"db","SecretString":"x","SecretBinary":"AAEC"}`)
	f.Add("UpdateSecretVersionStage", "application/x-amz-json-1.1", `{"SecretId":"db","VersionStage":"AWSCURRENT","RemoveFromVersionId":"x"}`)
	f.Add("CreateSecret", "application/x-amz-json-1.1", `{"Name":"bad name!"}`)
	f.Add("ListSecrets", "application/x-amz-json-1.1", `{"MaxResults":0}`)
	f.Add("ListSecrets", "application/x-amz-json-1.1", `{"NextToken":"-1"}`)
	f.Add("ListSecretVersionIds", "application/x-amz-json-1.1", `{"SecretId":"db","MaxResults":101}`)
	f.Add("RotateSecret", "application/x-amz-json-1.1", `{"SecretId":"db","RotationRules":{"AutomaticallyAfterDays":-1}}`)
	f.Add("DescribeSecret", "text/plain", `{"SecretId":"db"}`)
	f.Add("Nope", "application/x-amz-json-1.1", `{}`)
	f.Add("GetSecretValue", "application/x-amz-json-1.1", `{"SecretId":`)
	f.Add("GetSecretValue", "application/x-amz-json-1.1", `{"SecretId":1}`)
	f.Add("CreateSecret", "application/x-amz-json-1.1", `{"Name":"n","SecretString":"a"} {}`)

	f.Fuzz(func(t *testing.T, op, contentType, body string) {
		// Successful calls accumulate state; keep it small so each exec stays fast.
		if st, err := os.Stat(statePath); err == nil && st.Size() > 256<<10 {
			e.srv.store.mu.Lock()
			must(t, e.srv.store.update(func(st *state) error {
				st.Secrets = map[string]*secret{"db": st.Secrets["db"]}
				st.Secrets["db"].Versions = st.Secrets["db"].Versions[:1]
				st.Secrets["db"].Versions[0].Stages = []string{StageCurrent}
				return nil
			}))
			e.srv.store.mu.Unlock()
		}
		beforeMem := e.srv.store.snapshot()
		beforeDisk, err := os.ReadFile(statePath)
		must(t, err)

		r := httptest.NewRequest(http.MethodPost, e.srv.Endpoint()+"/", strings.NewReader(body))
		r.Header.Set("X-Amz-Target", "secretsmanager."+op)
		r.Header.Set("Content-Type", contentType)
		if !validHeader(op) || !validHeader(contentType) {
			return // not sendable over HTTP
		}
		sum := sha256.Sum256([]byte(body))
		cr := r.Clone(context.Background())
		cr.Header = r.Header.Clone()
		must(t, v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: e.admin.AccessKeyID, SecretAccessKey: e.admin.SecretAccessKey, SessionToken: e.admin.SessionToken},
			cr, hex.EncodeToString(sum[:]), "secretsmanager", testRegion, time.Now()))
		r.Header = cr.Header
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)

		if rec.Code == http.StatusOK {
			return
		}
		if rec.Code < 400 || rec.Code > 499 {
			t.Fatalf("%s %q: status %d: %s", op, body, rec.Code, rec.Body)
		}
		var e2 struct {
			Type    string `json:"__type"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &e2); err != nil || e2.Type == "" {
			t.Fatalf("error body is not a JSON error: %q", rec.Body)
		}
		if !bytes.Equal(beforeMem, e.srv.store.snapshot()) {
			t.Fatalf("%s %q refused with %s but changed the in-memory state", op, body, e2.Type)
		}
		afterDisk, err := os.ReadFile(statePath)
		must(t, err)
		if !bytes.Equal(beforeDisk, afterDisk) {
			t.Fatalf("%s %q refused with %s but changed the state file", op, body, e2.Type)
		}
	})
}

func validHeader(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
