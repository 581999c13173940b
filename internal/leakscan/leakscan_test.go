package leakscan

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Fake credentials below are assembled at run time so this file itself holds none.
var (
	fakeAKID   = "AKIA" + "IOSFODNN7EXAMPLQ"
	fakeSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ3kLe9WAB"
	live       = "Zq8Lr2Vx0NcPw4Ty6Hb1Jm3Kd5Gf7Sa9"
)

func TestScanBytes(t *testing.T) {
	s := &Scanner{Literals: []Literal{{Name: "db AWSCURRENT", Value: live}}}
	tests := []struct {
		name, text string
		want       []string // rules found, in order
	}{
		{"clean go code", "cc.Password = c.Password\nPassword: cfg.Password,\nout.Password = newPassword()\n", nil},
		{"shell PWD", "PWD=/tmp/region\n", nil},
		{"placeholder", "password=[redacted]\npassword: ${DB_PASSWORD}\n", nil},
		{"live secret anywhere", "some log line " + live + " end\n", []string{"live-secret"}},
		{"live secret in a word", "x" + live + "y", []string{"live-secret"}},
		{"long-term key id", "key " + fakeAKID + "\n", []string{"aws-access-key-id"}},
		{"temporary key id alone", "accessKeyId ASIA" + "ABCDEFGHIJKLMNOP\n", nil},
		{"secret key ini", "aws_secret_access_key = " + fakeSecret + "\n", []string{"aws-secret-access-key"}},
		{"secret key imds json", `"SecretAccessKey": "` + fakeSecret + `",`, []string{"aws-secret-access-key"}},
		{"private key", "-----BEGIN RSA " + "PRIVATE KEY-----\nMIIE\n", []string{"private-key"}},
		{"ec private key", "-----BEGIN EC " + "PRIVATE KEY-----\n", []string{"private-key"}},
		{"postgres url", "DATABASE_URL=postgres://app:" + "s3cretpw@db:5432/x\n", []string{"postgres-url-password"}},
		{"postgres url without password", "postgres://app@db:5432/x\n", nil},
		{"dsn password", "host=db user=app pass" + "word=hunter22 dbname=x\n", []string{"password-assignment"}},
		{"yaml password", "db:\n  pass" + "word: hunter22\n", []string{"password-assignment"}},
		{"json password", `{"pass` + `word": "hunter22"}`, []string{"password-assignment"}},
		{"env password", "PGPASS" + "WORD=hunter22\n", []string{"password-assignment"}},
		{"allow marker", "pass" + "word=hunter22 # " + AllowMarker + "\n", nil},
		{"short value", "pass" + "word=abc\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := s.ScanBytes("x", []byte(tt.text))
			var got []string
			for _, f := range fs {
				got = append(got, f.Rule)
				if strings.Contains(f.Match, live) || strings.Contains(f.String(), "hunter22") || strings.Contains(f.String(), fakeSecret) {
					t.Errorf("finding %q shows the secret", f)
				}
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("rules = %v, want %v (findings %v)", got, tt.want, fs)
			}
		})
	}
}

func TestBinaryFilesGetLiteralsOnly(t *testing.T) {
	s := &Scanner{Literals: []Literal{{Name: "db", Value: live}}}
	data := []byte("\x00\x01pass" + "word=hunter22\x00" + live)
	fs := s.ScanBytes("bin", data)
	if len(fs) != 1 || fs[0].Rule != "live-secret" || fs[0].Line != 0 {
		t.Fatalf("findings = %v, want one live-secret without a line", fs)
	}
}

func TestMask(t *testing.T) {
	for in, want := range map[string]string{"hunter22": "hu******(8)", "abc": "***(3)", `"quoted-pw"`: "qu******(9)"} {
		if got := Mask(in); got != want {
			t.Errorf("Mask(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestScanTreeSkipsAndFinds(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "secrets"), 0o700))
	must(os.WriteFile(filepath.Join(dir, "secrets", "secrets.json"), []byte(live), 0o600))
	must(os.WriteFile(filepath.Join(dir, "app.conf"), []byte("ok\nleak "+live+"\n"), 0o600))
	s := &Scanner{Literals: []Literal{{Name: "db", Value: live}}}
	fs, err := s.ScanTree(context.Background(), dir, func(rel string) (bool, string) {
		return rel == "secrets/secrets.json", "sealed store"
	})
	must(err)
	if len(fs) != 1 || fs[0].Where != filepath.Join(dir, "app.conf") || fs[0].Line != 2 {
		t.Fatalf("findings = %v, want app.conf:2", fs)
	}
	if len(s.Skipped) != 1 || !strings.Contains(s.Skipped[0], "sealed store") {
		t.Fatalf("skipped = %v", s.Skipped)
	}
}

func TestScanGitAndProcess(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("git is required")
	}
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		c := exec.Command("git", append([]string{"-C", dir}, args...)...)
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	run("init", "-q")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "testdata"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "testdata", "fixture.env"), []byte("pass"+"word=fixture123\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "x_test.go"), []byte("pass"+"word=fixture123\n"+live+"\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "config.php"), []byte("<?php $db_pass"+"word = 'hunter22';\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "untracked.txt"), []byte(live), 0o644))
	run("add", "testdata/fixture.env", "x_test.go", "config.php")
	s := &Scanner{Literals: []Literal{{Name: "db", Value: live}}}
	fs, err := s.ScanGit(context.Background(), dir)
	must(err)
	var got []string
	for _, f := range fs {
		got = append(got, filepath.Base(f.Where)+":"+f.Rule)
	}
	want := "config.php:password-assignment,x_test.go:live-secret"
	if strings.Join(got, ",") != want {
		t.Fatalf("findings = %v, want %s", got, want)
	}

	// A real process whose environment carries the live secret.
	c := exec.Command("sleep", "30")
	c.Env = []string{"APP_DB_PASS=" + live}
	must(c.Start())
	t.Cleanup(func() { _ = c.Process.Kill(); _ = c.Wait() })
	// Until execve, /proc/<pid>/environ is the parent's: wait for the child's.
	var pf []Finding
	for i := 0; i < 100 && len(pf) == 0; i++ {
		pf, err = s.ScanProcess(c.Process.Pid, "sleeper")
		must(err)
		if len(pf) == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if len(pf) != 1 || !strings.HasSuffix(pf[0].Where, "environ") {
		t.Fatalf("process findings = %v, want one in environ", pf)
	}
}
