package release

import (
	"strings"
	"testing"
)

func TestParseMigrations(t *testing.T) {
	ms, err := ParseMigrations([]byte(`[{"version":1,"name":"a","breaking":false},{"version":3,"name":"b","breaking":true,"reason":"drops x"}]`))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[1] != (Migration{Version: 3, Name: "b", Breaking: true, Reason: "drops x"}) {
		t.Errorf("parsed %+v", ms)
	}
	for _, bad := range []string{``, `null`, `{"version":1}`, `[{"version":2},{"version":2}]`, `[{"version":"1"}]`, `applied 3 migrations`} {
		if _, err := ParseMigrations([]byte(bad)); err == nil {
			t.Errorf("ParseMigrations(%q) succeeded, want an error", bad)
		}
	}
}

func TestNewBreaking(t *testing.T) {
	old := []Migration{{Version: 1}, {Version: 2, Breaking: true, Name: "old contract"}}
	next := append(append([]Migration(nil), old...), Migration{Version: 3, Name: "add"}, Migration{Version: 4, Name: "drop", Breaking: true, Reason: "drops x"})
	got := NewBreaking(next, old)
	if len(got) != 1 || got[0].Version != 4 {
		t.Fatalf("NewBreaking = %+v, want only migration 4 (2 is already in the current version)", got)
	}
	if d := DescribeBreaking(got); d != "migration 4 (drop): drops x" {
		t.Errorf("DescribeBreaking = %q", d)
	}
	if got := NewBreaking(next, nil); len(got) != 2 {
		t.Errorf("with the current list unknown: %+v, want both breaking migrations", got)
	}
	if got := NewBreaking(old, next); len(got) != 0 {
		t.Errorf("rolling back to an older list: %+v, want none (its migrations are all applied already)", got)
	}
	if !strings.Contains(DescribeBreaking(next[1:2]), "old contract") {
		t.Error("DescribeBreaking drops the name")
	}
}
