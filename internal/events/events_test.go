package events

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/haven-platform/haven/internal/api"
)

func TestLogKeepsTheNewestAndMirrorsEachEvent(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, 3)
	for _, k := range []string{"launch", "in-service", "unhealthy", "replace"} {
		l.Add("fleet", k, "i-0abc", "zone a")
	}
	got := l.Since(0)
	if len(got) != 3 || got[0].Kind != "in-service" || got[2].Seq != 4 {
		t.Fatalf("ring = %+v, want the last 3 events with seq 2..4", got)
	}
	if after := l.Since(3); len(after) != 1 || after[0].Kind != "replace" {
		t.Errorf("Since(3) = %+v, want only the replace event", after)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("mirrored %d lines, want 4", len(lines))
	}
	var e struct{ Seq int64 }
	if err := json.Unmarshal([]byte(lines[3]), &e); err != nil || e.Seq != 4 {
		t.Errorf("last mirrored line %q: seq %d, err %v", lines[3], e.Seq, err)
	}
}

func TestQueryFiltersAndAttrs(t *testing.T) {
	l := New(nil, 10)
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l.now = func() time.Time { clock = clock.Add(time.Minute); return clock }
	l.Add("fleet", "launch", "i-1", "")
	l.Emit(api.Event{Component: "db", Kind: "failover-completed", Subject: "db_b", Attrs: map[string]any{"epoch": 2, "rto_ms": 180}})
	l.Add("fleet", "launch", "i-2", "")
	if got := l.Query(api.EventQuery{Component: "db"}); len(got) != 1 || got[0].Attrs["epoch"] != 2 || got[0].Seq != 2 {
		t.Errorf("db events = %+v", got)
	}
	since := time.Date(2026, 1, 1, 0, 2, 0, 0, time.UTC)
	if got := l.Query(api.EventQuery{Since: since}); len(got) != 2 || got[0].Seq != 2 {
		t.Errorf("events since %v = %+v, want seq 2 and 3", since, got)
	}
	if got := l.Query(api.EventQuery{After: 2, Component: "fleet"}); len(got) != 1 || got[0].Subject != "i-2" {
		t.Errorf("fleet events after 2 = %+v", got)
	}
	q, err := api.ParseEventQuery(api.EventQuery{After: 5, Since: since, Component: "db"}.Values())
	if err != nil || q.After != 5 || !q.Since.Equal(since) || q.Component != "db" {
		t.Errorf("query round trip = %+v, %v", q, err)
	}
}
