package events

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
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
