package region

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/haven-platform/haven/internal/fleet"
	"github.com/haven-platform/haven/internal/release"
)

// listTimeout bounds one run of the app's migration listing.
const listTimeout = 30 * time.Second

// breakingMigrations is the releases' Breaking check (spec app.migrations):
// it asks next's program and current's which migrations they carry, and
// names the breaking ones next adds. When current's list cannot be had (an
// older build without the command), every breaking migration of next
// counts, and the answer says so.
func (r *Region) breakingMigrations(ctx context.Context, next, current release.Version) (string, error) {
	nextList, err := r.listMigrations(ctx, next)
	if err != nil {
		return "", err
	}
	curList, curErr := r.listMigrations(ctx, current)
	if curErr != nil {
		curList = nil
	}
	br := release.NewBreaking(nextList, curList)
	if len(br) == 0 {
		return "", nil
	}
	which := release.DescribeBreaking(br)
	if curErr != nil {
		which += fmt.Sprintf(" (%s's own list could not be had, so every breaking migration counts: %v)", current.ID, curErr)
	}
	return which, nil
}

// listMigrations runs v's program with app.migrations' arguments, as
// unprivileged as an instance, with v's environment but no database, and
// parses what it prints.
func (r *Region) listMigrations(ctx context.Context, v release.Version) ([]release.Migration, error) {
	t := r.versionTemplate(v)
	if len(t.Command) == 0 {
		return nil, fmt.Errorf("list %s's migrations: it has no command", v.ID)
	}
	cmd := append([]string{t.Command[0]}, r.spec.App.Migrations...)
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent"}
	for k, val := range v.Env {
		env = append(env, k+"="+val)
	}
	logPath := filepath.Join(filepath.Dir(r.cfg.ReleasesDir), "logs", "migrations.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("list %s's migrations: %w", v.ID, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "%s %s: %s\n", time.Now().UTC().Format(time.RFC3339), v.ID, strings.Join(cmd, " "))
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	var out bytes.Buffer
	err = fleet.RunTask(ctx, fleet.Task{Command: cmd, Env: env, Log: logf, Stdout: &limited{w: &out, n: 1 << 20}, Sandbox: r.cfg.Fleet.Sandbox})
	if err != nil {
		return nil, fmt.Errorf("list %s's migrations: %s failed: %w (app.migrations; its error output is in %s)", v.ID, strings.Join(cmd, " "), err, logPath)
	}
	ms, err := release.ParseMigrations(out.Bytes())
	if err != nil {
		return nil, fmt.Errorf("list %s's migrations: %s: %w", v.ID, strings.Join(cmd, " "), err)
	}
	return ms, nil
}

// limited writes at most n bytes to w and drops the rest, so a runaway
// program cannot fill the daemon's memory; the parse then fails.
type limited struct {
	w io.Writer
	n int
}

func (l *limited) Write(p []byte) (int, error) {
	if len(p) > l.n {
		_, _ = l.w.Write(p[:l.n])
		l.n = 0
		return len(p), nil
	}
	l.n -= len(p)
	return l.w.Write(p)
}
