package alarms

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/clock"
)

// logs is a logger that writes JSON lines to the test log and keeps them,
// so a test can check what was logged.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
	t   *testing.T
}

func newLogs(t *testing.T) (*slog.Logger, *logs) {
	l := &logs{t: t}
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})), l
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// waitFor polls cond until it holds, failing the test after 10 s of real
// time (a bound for a broken test, not a speed requirement).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// advanceUntil moves the fake clock by step until cond holds (the loops
// under test park on the clock between steps), failing after 10 s of real
// time.
func advanceUntil(t *testing.T, clk *clock.Fake, step time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (fake clock at %s)", what, clk.Now().Format(time.TimeOnly))
		}
		clk.Advance(step)
		time.Sleep(time.Millisecond)
	}
}

// hook is a webhook receiver that records every notification.
type hook struct {
	mu       sync.Mutex
	received []Notification
	keys     []string // Idempotency-Key headers
	auth     []string
	status   int // answer; 0 means 204
	block    chan struct{}
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.block != nil {
		<-h.block
	}
	var n Notification
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&n) != nil {
		http.Error(w, "want a JSON POST", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.received = append(h.received, n)
	h.keys = append(h.keys, r.Header.Get("Idempotency-Key"))
	h.auth = append(h.auth, r.Header.Get("Authorization"))
	st := h.status
	h.mu.Unlock()
	if st == 0 {
		st = http.StatusNoContent
	}
	w.WriteHeader(st)
}

func (h *hook) all() []Notification {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Notification(nil), h.received...)
}

// count returns how many notifications of alarm entering state arrived.
func (h *hook) count(alarm string, state State) int {
	n := 0
	for _, x := range h.all() {
		if x.AlarmName == alarm && x.NewStateValue == state {
			n++
		}
	}
	return n
}

// fakeServiceNow answers the part of the ServiceNow Table API the incident
// action uses, on the incident table: GET with an encoded query on
// correlation_id and state, POST, PATCH by sys_id; basic auth or a bearer
// token; JSON {"result": ...} envelopes, 201 on create.
type fakeServiceNow struct {
	mu                   sync.Mutex
	user, pass, token    string
	incidents            []map[string]string
	gets, posts, patches int
	denied               int
	t                    *testing.T
}

func (f *fakeServiceNow) authorized(r *http.Request) bool {
	if f.token != "" {
		return r.Header.Get("Authorization") == "Bearer "+f.token
	}
	u, p, ok := r.BasicAuth()
	return ok && u == f.user && p == f.pass
}

func (f *fakeServiceNow) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	reply := func(code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
	if !f.authorized(r) {
		f.denied++
		reply(http.StatusUnauthorized, map[string]any{"error": map[string]string{"message": "User Not Authenticated", "detail": "Required to provide Auth information"}, "status": "failure"})
		return
	}
	const base = "/api/now/table/incident"
	switch {
	case r.Method == http.MethodGet && r.URL.Path == base:
		f.gets++
		conds, err := parseEncodedQuery(r.URL.Query().Get("sysparm_query"))
		if err != nil {
			reply(http.StatusBadRequest, map[string]any{"error": map[string]string{"message": err.Error()}})
			return
		}
		out := []map[string]string{}
		for _, inc := range f.incidents {
			if conds(inc) {
				out = append(out, project(inc, r.URL.Query().Get("sysparm_fields")))
			}
		}
		reply(http.StatusOK, map[string]any{"result": out})
	case r.Method == http.MethodPost && r.URL.Path == base:
		f.posts++
		var in map[string]string
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in["short_description"] == "" || in["correlation_id"] == "" {
			reply(http.StatusBadRequest, map[string]any{"error": map[string]string{"message": "short_description and correlation_id required"}})
			return
		}
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		in["sys_id"] = hex.EncodeToString(b)
		in["number"] = fmt.Sprintf("INC%07d", 10001+len(f.incidents))
		in["state"] = "1"
		f.incidents = append(f.incidents, in)
		reply(http.StatusCreated, map[string]any{"result": in})
	case r.Method == http.MethodPatch && strings.HasPrefix(r.URL.Path, base+"/"):
		f.patches++
		id := strings.TrimPrefix(r.URL.Path, base+"/")
		var in map[string]string
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			reply(http.StatusBadRequest, map[string]any{"error": map[string]string{"message": "bad JSON"}})
			return
		}
		for _, inc := range f.incidents {
			if inc["sys_id"] == id {
				if in["state"] == SNStateResolved && (in["close_code"] == "" || in["close_notes"] == "") {
					reply(http.StatusForbidden, map[string]any{"error": map[string]string{"message": "Data Policy Exception: Resolution code and notes are mandatory"}})
					return
				}
				for k, v := range in {
					if k == "work_notes" {
						inc[k] += v + "\n"
						continue
					}
					inc[k] = v
				}
				reply(http.StatusOK, map[string]any{"result": inc})
				return
			}
		}
		reply(http.StatusNotFound, map[string]any{"error": map[string]string{"message": "No Record found"}})
	default:
		reply(http.StatusBadRequest, map[string]any{"error": map[string]string{"message": "unsupported " + r.Method + " " + r.URL.Path}})
	}
}

// parseEncodedQuery supports field=value and fieldNOT INa,b,c joined by '^'
// ('^^' is a literal '^').
func parseEncodedQuery(q string) (func(map[string]string) bool, error) {
	var conds []func(map[string]string) bool
	for _, part := range strings.Split(strings.ReplaceAll(q, "^^", "\x00"), "^") {
		part = strings.ReplaceAll(part, "\x00", "^")
		switch {
		case strings.Contains(part, "NOT IN"):
			i := strings.Index(part, "NOT IN")
			field, vals := part[:i], strings.Split(part[i+len("NOT IN"):], ",")
			conds = append(conds, func(m map[string]string) bool {
				for _, v := range vals {
					if m[field] == v {
						return false
					}
				}
				return true
			})
		case strings.Contains(part, "="):
			field, val, _ := strings.Cut(part, "=")
			conds = append(conds, func(m map[string]string) bool { return m[field] == val })
		default:
			return nil, fmt.Errorf("unsupported condition %q", part)
		}
	}
	return func(m map[string]string) bool {
		for _, c := range conds {
			if !c(m) {
				return false
			}
		}
		return true
	}, nil
}

func project(m map[string]string, fields string) map[string]string {
	if fields == "" {
		return m
	}
	out := map[string]string{}
	for _, f := range strings.Split(fields, ",") {
		out[f] = m[f]
	}
	return out
}

func (f *fakeServiceNow) snapshot() (incidents []map[string]string, gets, posts, patches int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, inc := range f.incidents {
		c := map[string]string{}
		for k, v := range inc {
			c[k] = v
		}
		incidents = append(incidents, c)
	}
	return incidents, f.gets, f.posts, f.patches
}

// staticCreds returns a fixed credential, as the secrets store would.
func staticCreds(c Credential) Credentials {
	return CredentialsFunc(func(_ context.Context) (Credential, error) { return c, nil })
}
