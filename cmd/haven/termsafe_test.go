package main

import (
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/alarms"
	"github.com/haven-platform/haven/internal/api"
)

// fakeDaemon serves routes on the state dir's API socket, as the daemon does.
func fakeDaemon(t *testing.T, routes map[string]any) string {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(dir, api.SocketName))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for pattern, v := range routes {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(v)
		})
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return dir
}

// A caller of the Secrets Manager API chooses the SecretId the audit trail
// records: its control characters reach `haven secrets audit` escaped, in
// the table and in --json, which stays valid JSON.
func TestSecretsAuditEscapesControlCharacters(t *testing.T) {
	evil := "arn:aws:secretsmanager:eu-west-1:000000000000:secret:x\x1b[8m\x1b]0;pwned\x07\u202e\u009b2J"
	dir := fakeDaemon(t, map[string]any{"GET /v1/secrets/audit": []api.AuditRecord{{
		Time: time.Now(), RequestID: "r1", Principal: "arn:aws:sts::000000000000:assumed-role/app/i-0abc",
		Action: "GetSecretValue", SecretARN: evil, Result: "ResourceNotFoundException", SourceIP: "127.0.1.2",
		UserAgent: "ua\x1b[2J",
	}}})
	out, errOut, err := run(t, "secrets", "audit", "--state-dir", dir)
	if err != nil {
		t.Fatalf("secrets audit: %v\n%s", err, errOut)
	}
	if strings.ContainsAny(out, "\x1b\x07\u202e\u009b") {
		t.Errorf("raw control characters reached the terminal:\n%q", out)
	}
	if !strings.Contains(out, `secret:x\u001b[8m\u001b]0;pwned\u0007\u202e\u009b2J`) {
		t.Errorf("the secret id is not shown escaped:\n%s", out)
	}

	out, _, err = run(t, "secrets", "audit", "--json", "--state-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(out, "\x1b\x07\u202e\u009b") {
		t.Errorf("raw control characters in --json:\n%q", out)
	}
	var recs []api.AuditRecord
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		t.Fatalf("--json is not JSON any more: %v\n%s", err, out)
	}
	if len(recs) != 1 || recs[0].SecretARN != evil {
		t.Errorf("--json changed the values: %+v", recs)
	}
}

// Events carry instance ids, reasons and messages from every tier: their
// control characters are escaped too, one event a line.
func TestEventsEscapeControlCharacters(t *testing.T) {
	dir := fakeDaemon(t, map[string]any{"GET /v1/events": []api.Event{{
		Seq: 1, Time: time.Now(), Component: "fleet", Kind: "replace", Subject: "i-0\x1b[31m",
		Message: "exited: \x1b[8mline one\nline two",
	}}})
	out, _, err := run(t, "events", "--state-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("raw ESC reached the terminal: %q", out)
	}
	if !strings.Contains(out, `i-0\u001b[31m`) || !strings.Contains(out, `\u001b[8mline one\nline two`) {
		t.Errorf("event not escaped on one line:\n%s", out)
	}
}

// A webhook's error text comes from the far end (its status line, its
// body): `haven alarms` and `haven alarms history` show it escaped, one
// row a line.
func TestAlarmsEscapeAnEndpointsText(t *testing.T) {
	bad := "post webhook: 500 \x1b]0;pwned\x07\nsecond line\u202e"
	now := time.Now()
	st := alarms.Status{Time: now, Alarms: []alarms.AlarmStatus{{
		Definition: alarms.Definition{Name: "db-failover", Metric: "DatabaseFailovers", Statistic: "Sum", Period: time.Minute,
			EvaluationPeriods: 1, DatapointsToAlarm: 1, Comparison: alarms.GreaterThanThreshold, Runbook: "docs/runbooks/db-failover.md"},
		State: alarms.StateAlarm, StateUpdated: now, Reason: "Threshold Crossed",
	}}, Outbox: []alarms.Delivery{{ID: "k#hook", Alarm: "db-failover", Action: "hook", Attempts: 3, NextAttempt: now, LastError: bad,
		Notification: alarms.Notification{OldStateValue: alarms.StateOK, NewStateValue: alarms.StateAlarm}}}}
	dir := fakeDaemon(t, map[string]any{
		"GET /v1/alarms": st,
		"GET /v1/alarms/{name}/history": []alarms.HistoryItem{{Time: now, Type: alarms.HistoryAction, Action: "hook", Attempt: 3,
			Summary: "Failed to execute action hook for the ALARM transition", Error: bad}},
	})
	for _, args := range [][]string{{"alarms"}, {"alarms", "history", "db-failover"}} {
		out, errOut, err := run(t, append(args, "--state-dir", dir)...)
		if err != nil {
			t.Fatalf("haven %v: %v\n%s", args, err, errOut)
		}
		if strings.ContainsAny(out, "\x1b\x07\u202e") {
			t.Errorf("haven %v: raw control characters reached the terminal:\n%q", args, out)
		}
		if !strings.Contains(out, `500 \u001b]0;pwned\u0007\nsecond line\u202e`) {
			t.Errorf("haven %v: the endpoint's text is not shown escaped on one line:\n%s", args, out)
		}
		if strings.Contains(out, "\nsecond line") {
			t.Errorf("haven %v: the endpoint's newline broke the row:\n%s", args, out)
		}
	}
}
