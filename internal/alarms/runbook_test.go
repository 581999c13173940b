package alarms

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestEveryDefaultAlarmHasARunbook checks each default alarm links to a
// runbook that exists, has the three sections, and whose commands are haven
// commands that exist today (their names appear as cobra Use: lines in
// cmd/haven).
// takesArgument are the commands whose next word is an argument, not a
// subcommand (haven alarms history NAME, haven logs TARGET).
var takesArgument = map[string]bool{"history": true, "logs": true}

func TestEveryDefaultAlarmHasARunbook(t *testing.T) {
	defs, err := DefaultDefinitions(Params{FleetMin: 2})
	must(t, err)
	var cmds strings.Builder
	files, _ := filepath.Glob(filepath.Join("..", "..", "cmd", "haven", "*.go"))
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		must(t, err)
		cmds.Write(b)
	}
	uses := map[string]bool{}
	for _, m := range regexp.MustCompile(`Use:\s+"([a-z-]+)`).FindAllStringSubmatch(cmds.String(), -1) {
		uses[m[1]] = true
	}
	if !uses["status"] || !uses["db"] {
		t.Fatalf("could not read the command names from cmd/haven: %v", uses)
	}
	invocation := regexp.MustCompile("`bin/haven ([^`]*)`")
	for _, d := range defs {
		if d.Runbook != RunbookPath(d.Name) {
			t.Errorf("%s links to %q", d.Name, d.Runbook)
		}
		b, err := os.ReadFile(filepath.Join("..", "..", d.Runbook))
		if err != nil {
			t.Errorf("%s: runbook: %v", d.Name, err)
			continue
		}
		doc := string(b)
		for _, section := range []string{"# Runbook: " + d.Name, "## What it means", "## First three commands", "## How to end it"} {
			if !strings.Contains(doc, section) {
				t.Errorf("%s: the runbook has no %q", d.Name, section)
			}
		}
		first := doc[strings.Index(doc, "## First three commands"):]
		first = first[:strings.Index(first, "## How to end it")]
		if n := len(regexp.MustCompile(`(?m)^\d\. `).FindAllString(first, -1)); n != 3 {
			t.Errorf("%s: %d numbered commands in the first section, want 3", d.Name, n)
		}
		for _, m := range invocation.FindAllStringSubmatch(strings.ReplaceAll(doc, "\n", " "), -1) {
			for _, word := range strings.Fields(m[1]) {
				if strings.HasPrefix(word, "-") || strings.ToUpper(word) == word {
					break // flags and placeholders (ID, N, KILL) follow the command words
				}
				if !uses[word] {
					t.Errorf("%s: the runbook runs `bin/haven %s`, but cmd/haven has no command %q", d.Name, m[1], word)
				}
				if takesArgument[word] {
					break // the next word is its argument: an alarm's name, a log
				}
			}
		}
	}
}
