package routes

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/alarms"
	"github.com/haven-platform/haven/internal/drill"
)

type fakeEngine struct{}

func (fakeEngine) Status() *alarms.Status {
	return &alarms.Status{Region: "dev", Alarms: []alarms.AlarmStatus{{Definition: alarms.Definition{Name: "db-failover"}, State: alarms.StateOK}}}
}

func (fakeEngine) History(name string) ([]alarms.HistoryItem, error) {
	if name != "db-failover" {
		return nil, errors.New("alarm history " + name + ": no such alarm")
	}
	return []alarms.HistoryItem{{Type: alarms.HistoryStateUpdate, Summary: "Alarm updated from OK to ALARM"}}, nil
}

type fakeOps struct {
	engine Alarms
	store  drill.ReportStore
}

func (f fakeOps) Alarms() Alarms                   { return f.engine }
func (f fakeOps) ConsoleLoginURL() (string, error) { return "http://127.0.0.1:8444/login?token=t", nil }
func (f fakeOps) Reports() drill.ReportStore       { return f.store }

type noEvents struct{ kinds []string }

func (n *noEvents) Add(_, kind, _, _ string) { n.kinds = append(n.kinds, kind) }

func do(t *testing.T, h http.Handler, method, path, body string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

// TestOpsRoutes: alarms answer 503 until the engine runs, then the status
// and a history (404 naming the alarms for an unknown one); a login link;
// a report is saved (its envelope checked), listed and read back.
func TestOpsRoutes(t *testing.T) {
	ev := &noEvents{}
	ops := fakeOps{store: drill.ReportStore{Dir: filepath.Join(t.TempDir(), "drills")}}
	mux := http.NewServeMux()
	OpsRoutes(mux, &ops, ev)
	if code, body := do(t, mux, "GET", "/v1/alarms", ""); code != 503 || !strings.Contains(body, "not running yet") {
		t.Errorf("alarms before the engine: %d %s", code, body)
	}
	ops.engine = fakeEngine{}
	if code, body := do(t, mux, "GET", "/v1/alarms", ""); code != 200 || !strings.Contains(body, `"db-failover"`) {
		t.Errorf("alarms: %d %s", code, body)
	}
	if code, body := do(t, mux, "GET", "/v1/alarms/db-failover/history", ""); code != 200 || !strings.Contains(body, "OK to ALARM") {
		t.Errorf("history: %d %s", code, body)
	}
	if code, body := do(t, mux, "GET", "/v1/alarms/nope/history", ""); code != 404 || !strings.Contains(body, "no such alarm") {
		t.Errorf("unknown history: %d %s", code, body)
	}
	if code, body := do(t, mux, "POST", "/v1/console/login", ""); code != 200 || !strings.Contains(body, "token=t") {
		t.Errorf("console login: %d %s", code, body)
	}
	rep, _ := json.Marshal(drill.PITRReport{Envelope: drill.Envelope{Drill: "pitr", StartedAt: time.Now(), EndedAt: time.Now(), Region: "dev", Pass: true}})
	code, body := do(t, mux, "POST", "/v1/drills/reports", string(rep))
	var info drill.ReportInfo
	if json.Unmarshal([]byte(body), &info); code != 201 || info.Drill != "pitr" {
		t.Fatalf("save: %d %s", code, body)
	}
	if code, body := do(t, mux, "POST", "/v1/drills/reports", `{"drill":"x"}`); code != 400 || !strings.Contains(body, "started_at: missing") {
		t.Errorf("save a bad report: %d %s", code, body)
	}
	if code, body := do(t, mux, "GET", "/v1/drills/reports", ""); code != 200 || !strings.Contains(body, info.ID) {
		t.Errorf("list: %d %s", code, body)
	}
	if code, body := do(t, mux, "GET", "/v1/drills/reports/"+info.ID, ""); code != 200 || !strings.Contains(body, `"drill": "pitr"`) {
		t.Errorf("read: %d %s", code, body)
	}
	if code, _ := do(t, mux, "GET", "/v1/drills/reports/20261130T000000Z-none", ""); code != 404 {
		t.Errorf("read a missing report: %d", code)
	}
	if strings.Join(ev.kinds, ",") != "login-link,report-saved" {
		t.Errorf("events recorded: %v", ev.kinds)
	}
}
