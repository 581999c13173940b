package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestFinishDrill(t *testing.T) {
	body := func(w io.Writer) { fmt.Fprintln(w, "  requests 10") }
	var out bytes.Buffer
	pass := drillResult{name: "pitr", header: "pitr drill", pass: true}
	if err := finishDrill(&out, false, nil, pass, body); err != nil {
		t.Fatalf("a passing drill returned %v", err)
	}
	if got, want := out.String(), "pitr drill: PASS\n  requests 10\n"; got != want {
		t.Errorf("text report = %q, want %q", got, want)
	}

	out.Reset()
	fail := drillResult{name: "pitr", header: "pitr drill", reasons: []string{"a", "b"}, why: "a; b"}
	err := finishDrill(&out, false, nil, fail, body)
	if got, want := out.String(), "pitr drill: FAIL\n  requests 10\n  reason: a\n  reason: b\n"; got != want {
		t.Errorf("text report = %q, want %q", got, want)
	}
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 2 || ee.msg != "drill pitr failed: a; b" {
		t.Errorf("failing drill: err = %#v, want exit 2 with the reasons", err)
	}

	out.Reset()
	if err := finishDrill(&out, true, map[string]bool{"pass": false}, fail, body); err == nil {
		t.Error("a failing drill with --json returned nil")
	}
	var rep map[string]bool
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep["pass"] {
		t.Errorf("--json printed %q (%v), want the report alone", out.String(), err)
	}
}
