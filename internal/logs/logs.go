// Package logs reads a region's log files for `haven logs`: whatever a file holds (the daemon's JSON, the load balancer's access log, PostgreSQL's text, an app's output), every line comes out as one JSON object with exactly one component key.
package logs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// Source is one log file and what its lines are about.
type Source struct {
	// Target is the name `haven logs` was given for it.
	Target string
	// Component is the component key given to lines that have none.
	Component string
	// Path is the file.
	Path string
	// Attrs are added to lines that are not JSON (e.g. the node's name).
	Attrs map[string]string
}

// Resolve maps a target onto its log files:
//
//	daemon        the daemon's log (<state>/daemon.log)
//	lb            the load balancer's access log
//	db            every database node's log; db_a, db-a: one node's
//	i-0…          an instance's output
//	release       the release task's output
//	events        the event log
func Resolve(stateDir, target string) ([]Source, error) {
	logDir := filepath.Join(stateDir, "logs")
	one := func(component, path string, attrs map[string]string) ([]Source, error) {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("logs %s: %w", target, err)
		}
		return []Source{{Target: target, Component: component, Path: path, Attrs: attrs}}, nil
	}
	switch {
	case target == "daemon":
		return one("daemon", filepath.Join(stateDir, "daemon.log"), nil)
	case target == "lb":
		return one("lb", filepath.Join(logDir, "access.log"), nil)
	case target == "release":
		return one("release", filepath.Join(logDir, "release.log"), nil)
	case target == "events":
		return one("events", filepath.Join(logDir, "events.log"), nil)
	case target == "db":
		var out []Source
		for _, n := range dbNodes(logDir) {
			out = append(out, Source{Target: n, Component: "db", Path: filepath.Join(logDir, n+".log"), Attrs: map[string]string{"node": n}})
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("logs db: no database node log in %s", logDir)
		}
		return out, nil
	case strings.HasPrefix(target, "db_") || strings.HasPrefix(target, "db-"):
		n := "db_" + target[3:]
		if !slices.Contains(dbNodes(logDir), n) {
			return nil, unknown(stateDir, target)
		}
		return one("db", filepath.Join(logDir, n+".log"), map[string]string{"node": n})
	case strings.HasPrefix(target, "i-") && !strings.ContainsAny(target, "/."):
		path := filepath.Join(logDir, "instances", target+".log")
		if _, err := os.Stat(path); err != nil {
			return nil, unknown(stateDir, target)
		}
		return one("app", path, map[string]string{"instance": target})
	}
	return nil, unknown(stateDir, target)
}

func dbNodes(logDir string) []string {
	m, _ := filepath.Glob(filepath.Join(logDir, "db_*.log"))
	var out []string
	for _, p := range m {
		out = append(out, strings.TrimSuffix(filepath.Base(p), ".log"))
	}
	sort.Strings(out)
	return out
}

// Targets lists what Resolve accepts in this state dir now.
func Targets(stateDir string) []string {
	logDir := filepath.Join(stateDir, "logs")
	out := []string{"daemon", "lb", "events", "db"}
	out = append(out, dbNodes(logDir)...)
	if _, err := os.Stat(filepath.Join(logDir, "release.log")); err == nil {
		out = append(out, "release")
	}
	inst, _ := filepath.Glob(filepath.Join(logDir, "instances", "i-*.log"))
	slices.SortFunc(inst, func(a, b string) int {
		fa, _ := os.Stat(a)
		fb, _ := os.Stat(b)
		if fa == nil || fb == nil {
			return strings.Compare(a, b)
		}
		return fb.ModTime().Compare(fa.ModTime()) // newest first
	})
	for _, p := range inst {
		out = append(out, strings.TrimSuffix(filepath.Base(p), ".log"))
	}
	return out
}

func unknown(stateDir, target string) error {
	t := Targets(stateDir)
	if len(t) > 12 {
		t = append(t[:12], "…")
	}
	return fmt.Errorf("logs %s: no such log: the targets are %s (instances as listed by `haven instance list`)", target, strings.Join(t, ", "))
}

// pgTime matches PostgreSQL's default log_line_prefix ('%m [%p] ').
var pgTime = regexp.MustCompile(`^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) (UTC|[A-Z]{2,5}|[+-]\d\d(?::?\d\d)?) `)

// Normalize turns one line of src into one JSON object with exactly one
// component key, and returns its time (zero when the line has none):
//
//   - a JSON object with one component key is kept as it is;
//   - a JSON object without one gets src's component;
//   - a JSON object with the key more than once (a logger that added a
//     component to one that had one) keeps the first, the others become
//     component_2, component_3, …;
//   - anything else (PostgreSQL's text, an app's print) becomes
//     {"time", "component", src's attrs, "msg": the line}.
func Normalize(src Source, line []byte) ([]byte, time.Time) {
	line = bytes.TrimRight(line, "\r\n")
	if n, t, ok := componentKeys(line); ok && n > 1 {
		return renameComponents(line), t
	} else if ok {
		if n == 1 {
			return line, t
		}
		body := bytes.TrimSpace(line)[1:]
		comp, _ := json.Marshal(src.Component)
		var b bytes.Buffer
		b.WriteString(`{"component":`)
		b.Write(comp)
		if len(bytes.TrimSpace(body)) > 1 { // not "}"
			b.WriteByte(',')
		}
		b.Write(body)
		return b.Bytes(), t
	}
	var t time.Time
	if m := pgTime.FindSubmatch(line); m != nil {
		if pt, err := time.Parse("2006-01-02 15:04:05.999999 MST", string(m[1])+" "+string(m[2])); err == nil {
			t = pt.UTC()
		}
	}
	rec := map[string]any{"component": src.Component, "msg": strings.ToValidUTF8(string(line), "\uFFFD")}
	for k, v := range src.Attrs {
		rec[k] = v
	}
	if !t.IsZero() {
		rec["time"] = t.Format(time.RFC3339Nano)
	}
	out, _ := json.Marshal(rec)
	return out, t
}

// componentKeys reports whether line is one JSON object, how many
// top-level "component" keys it has, and its top-level "time" if that is
// an RFC 3339 string.
func componentKeys(line []byte) (n int, t time.Time, ok bool) {
	trimmed := bytes.TrimSpace(line)
	if len(trimmed) < 2 || trimmed[0] != '{' || !json.Valid(trimmed) {
		return 0, time.Time{}, false
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if _, err := dec.Token(); err != nil { // {
		return 0, time.Time{}, false
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return 0, time.Time{}, false
		}
		key, _ := k.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return 0, time.Time{}, false
		}
		switch key {
		case "component":
			n++
		case "time":
			var s string
			if json.Unmarshal(v, &s) == nil {
				if pt, err := time.Parse(time.RFC3339Nano, s); err == nil {
					t = pt
				}
			}
		}
	}
	return n, t, true
}

// Options say which lines Read writes.
type Options struct {
	// Since keeps lines at or after it (lines without a time go with the
	// line before them). Zero: every line.
	Since time.Time
	// Follow keeps reading as the files grow, until ctx ends.
	Follow bool
	// Poll is how often a followed file is checked. Default 250 ms.
	Poll time.Duration
}

// Read writes the normalized lines of srcs to w, one file after the other
// (then, with Follow, each file's new lines as they come).
func Read(ctx context.Context, w io.Writer, srcs []Source, o Options) error {
	if o.Poll <= 0 {
		o.Poll = 250 * time.Millisecond
	}
	type open struct {
		src  Source
		f    *os.File
		r    *bufio.Reader
		keep bool // the last line with a time was kept
		part []byte
	}
	var files []*open
	defer func() {
		for _, f := range files {
			f.f.Close()
		}
	}()
	for _, s := range srcs {
		f, err := os.Open(s.Path)
		if err != nil {
			return fmt.Errorf("logs %s: %w", s.Target, err)
		}
		files = append(files, &open{src: s, f: f, r: bufio.NewReaderSize(f, 64<<10), keep: o.Since.IsZero()})
	}
	drain := func(of *open) error {
		for {
			chunk, err := of.r.ReadBytes('\n')
			if len(chunk) > 0 {
				of.part = append(of.part, chunk...)
			}
			if errors.Is(err, io.EOF) {
				return nil // an unfinished last line waits for its newline
			}
			if err != nil {
				return fmt.Errorf("logs %s: %w", of.src.Target, err)
			}
			line := of.part
			of.part = nil
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			out, t := Normalize(of.src, line)
			if !t.IsZero() {
				of.keep = o.Since.IsZero() || !t.Before(o.Since)
			}
			if !of.keep {
				continue
			}
			if _, err := w.Write(append(out, '\n')); err != nil {
				return err
			}
		}
	}
	for _, of := range files {
		if err := drain(of); err != nil {
			return err
		}
	}
	if !o.Follow {
		for _, of := range files {
			if len(bytes.TrimSpace(of.part)) > 0 {
				out, _ := Normalize(of.src, of.part)
				if of.keep {
					if _, err := w.Write(append(out, '\n')); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(o.Poll):
		}
		for _, of := range files {
			// A file truncated or replaced (rotated) is read from its start.
			if st, err := os.Stat(of.src.Path); err == nil {
				pos, _ := of.f.Seek(0, io.SeekCurrent)
				fst, _ := of.f.Stat()
				if st.Size() < pos-int64(of.r.Buffered()) || (fst != nil && !os.SameFile(st, fst)) {
					if nf, err := os.Open(of.src.Path); err == nil {
						of.f.Close()
						of.f, of.r, of.part = nf, bufio.NewReaderSize(nf, 64<<10), nil
					}
				}
			}
			if err := drain(of); err != nil {
				return err
			}
		}
	}
}

// renameComponents rewrites a JSON object whose top level has "component"
// more than once: the first stays, the next are component_2, component_3.
func renameComponents(line []byte) []byte {
	dec := json.NewDecoder(bytes.NewReader(bytes.TrimSpace(line)))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil {
		return line
	}
	var b bytes.Buffer
	b.WriteByte('{')
	seen := 0
	for i := 0; dec.More(); i++ {
		k, err := dec.Token()
		if err != nil {
			return line
		}
		key, _ := k.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return line
		}
		if key == "component" {
			seen++
			if seen > 1 {
				key = fmt.Sprintf("component_%d", seen)
			}
		}
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(key)
		b.Write(kb)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes()
}
