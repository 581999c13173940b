package logs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// CheckLine reports whether line is one JSON object with exactly one
// top-level component key (the promise `haven logs` keeps).
func checkLine(t *testing.T, line []byte) string {
	t.Helper()
	n, _, ok := componentKeys(line)
	if !ok || n != 1 {
		t.Errorf("line %q: JSON %v, %d component keys, want JSON with one", line, ok, n)
		return ""
	}
	var m map[string]any
	json.Unmarshal(line, &m)
	s, _ := m["component"].(string)
	return s
}

func TestNormalize(t *testing.T) {
	src := Source{Target: "db_a", Component: "db", Attrs: map[string]string{"node": "db_a"}}
	for _, c := range []struct {
		in, component, time string
		same                bool
	}{
		{`{"time":"2026-11-30T07:00:00Z","level":"INFO","msg":"x","component":"pgha"}`, "pgha", "2026-11-30T07:00:00Z", true},
		{`{"time":"2026-11-30T07:00:01.5Z","status":200}`, "db", "2026-11-30T07:00:01.5Z", false},
		{`{}`, "db", "", false},
		{`2026-11-30 07:00:02.123 UTC [1234] LOG:  database system is ready to accept connections`, "db", "2026-11-30T07:00:02.123Z", false},
		{`plain text from an app`, "db", "", false},
		{`{"time":"2026-11-30T07:00:03Z","component":"a","component":"b","x":1}`, "a", "2026-11-30T07:00:03Z", false},
		{"bad utf8 \xff\xfe", "db", "", false},
	} {
		out, tm := Normalize(src, []byte(c.in+"\n"))
		if got := checkLine(t, out); got != c.component {
			t.Errorf("%q: component %q, want %q (%s)", c.in, got, c.component, out)
		}
		if c.same && string(out) != c.in {
			t.Errorf("%q was rewritten: %s", c.in, out)
		}
		want := time.Time{}
		if c.time != "" {
			want, _ = time.Parse(time.RFC3339Nano, c.time)
		}
		if !tm.Equal(want) {
			t.Errorf("%q: time %v, want %v", c.in, tm, want)
		}
		if strings.Count(c.in, `"component"`) == 2 && !strings.Contains(string(out), `"component_2":"b"`) {
			t.Errorf("%q: the second component is lost: %s", c.in, out)
		}
		if !strings.HasPrefix(c.in, "{") && !strings.Contains(string(out), `"node":"db_a"`) {
			t.Errorf("%q: the source's attrs are missing: %s", c.in, out)
		}
	}
}

func state(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "logs", "instances"), 0o700)
	write := func(rel, body string) {
		if err := os.WriteFile(filepath.Join(dir, rel), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("daemon.log", `{"time":"2026-11-30T07:00:00Z","component":"region","msg":"up"}`+"\n"+`{"time":"2026-11-30T07:10:00Z","component":"fleet","msg":"launch"}`+"\n")
	write("logs/access.log", `{"time":"2026-11-30T07:05:00Z","status":200,"path":"/"}`+"\n")
	write("logs/db_a.log", "2026-11-30 07:00:00.000 UTC [10] LOG:  starting\n2026-11-30 07:20:00.000 UTC [10] ERROR:  boom\n\tcontinued detail\n")
	write("logs/db_b.log", "2026-11-30 07:00:00.000 UTC [11] LOG:  starting\n")
	write("logs/instances/i-0123456789abcdef0.log", "listening\n{\"msg\":\"request\",\"app\":\"courses\"}\n")
	return dir
}

func TestResolveNamesEveryTarget(t *testing.T) {
	dir := state(t)
	for target, want := range map[string][]string{
		"daemon": {"daemon.log"}, "lb": {"access.log"}, "db": {"db_a.log", "db_b.log"}, "db-a": {"db_a.log"}, "db_b": {"db_b.log"},
		"i-0123456789abcdef0": {"i-0123456789abcdef0.log"},
	} {
		srcs, err := Resolve(dir, target)
		if err != nil {
			t.Errorf("Resolve(%s): %v", target, err)
			continue
		}
		var got []string
		for _, s := range srcs {
			got = append(got, filepath.Base(s.Path))
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("Resolve(%s) = %v, want %v", target, got, want)
		}
	}
	for _, bad := range []string{"db_c", "i-../../etc", "nginx", "i-0nothere"} {
		_, err := Resolve(dir, bad)
		if err == nil || !strings.Contains(err.Error(), "the targets are daemon, lb, events, db, db_a, db_b") {
			t.Errorf("Resolve(%s) = %v, want the targets listed", bad, err)
		}
	}
}

func TestReadSinceAndEveryLineJSON(t *testing.T) {
	dir := state(t)
	since := time.Date(2026, 11, 30, 7, 4, 0, 0, time.UTC)
	for target, wantLines := range map[string]int{"daemon": 1, "lb": 1, "db": 2, "i-0123456789abcdef0": 2} {
		srcs, err := Resolve(dir, target)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		o := Options{Since: since}
		if strings.HasPrefix(target, "i-") {
			o = Options{}
		}
		if err := Read(t.Context(), &b, srcs, o); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(b.String()), "\n")
		if len(lines) != wantLines {
			t.Errorf("logs %s since %s: %d lines, want %d:\n%s", target, since, len(lines), wantLines, b.String())
		}
		for _, l := range lines {
			checkLine(t, []byte(l))
		}
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestFollowSeesNewLinesAndRotation: -f prints lines as they are appended,
// an unfinished line only once its newline arrives, and reads a replaced
// file from its start.
func TestFollowSeesNewLinesAndRotation(t *testing.T) {
	dir := state(t)
	srcs, _ := Resolve(dir, "lb")
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuf
	done := make(chan error, 1)
	go func() { done <- Read(ctx, &out, srcs, Options{Follow: true, Poll: 10 * time.Millisecond}) }()
	waitFor := func(n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for strings.Count(out.String(), "\n") < n {
			if time.Now().After(deadline) {
				t.Fatalf("want %d lines, have:\n%s", n, out.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(1)
	f, _ := os.OpenFile(srcs[0].Path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"time":"2026-11-30T07:06:00Z","status":503`)
	time.Sleep(50 * time.Millisecond)
	if n := strings.Count(out.String(), "\n"); n != 1 {
		t.Errorf("an unfinished line was printed: %q", out.String())
	}
	f.WriteString("}\n")
	f.Close()
	waitFor(2)
	// Rotation: a new file in its place.
	os.Rename(srcs[0].Path, srcs[0].Path+".1")
	os.WriteFile(srcs[0].Path, []byte(`{"time":"2026-11-30T07:07:00Z","status":204}`+"\n"), 0o600)
	waitFor(3)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		if c := checkLine(t, sc.Bytes()); c != "lb" {
			t.Errorf("line %s: component %q, want lb", sc.Text(), c)
		}
	}
}
