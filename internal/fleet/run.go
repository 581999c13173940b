package fleet

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/haven-platform/haven/internal/sandbox"
)

// RunResult is a finished command's output (at most 1 MiB of each stream).
type RunResult struct {
	ExitCode       int
	Stdout, Stderr string
}

// Run runs argv inside instance id's process group and network, like SSM
// Run Command: its metadata endpoint serves it as it serves the instance.
// env is its whole environment. It is killed when timeout passes or ctx ends.
func (f *Fleet) Run(ctx context.Context, id string, argv, env []string, timeout time.Duration) (RunResult, error) {
	if len(argv) == 0 {
		return RunResult{}, errors.New("argv: required")
	}
	f.mu.Lock()
	in := f.insts[id]
	pid, start := 0, (*exec.Cmd).Start
	if in != nil && in.state == StateInService {
		pid, start = in.pid, in.start
	}
	f.mu.Unlock()
	if pid == 0 {
		return RunResult{}, fmt.Errorf("instance %s: not found or not in service", id)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.Env = env
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pgid: pid, Pdeathsig: syscall.SIGKILL}
	if err := dropPrivileges(c, f.cfg.Sandbox); err != nil {
		return RunResult{}, fmt.Errorf("run %s on %s: %w", argv[0], id, err)
	}
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &limitedBuffer{b: &out}, &limitedBuffer{b: &errb}
	// Inside the instance's network too, as its own processes.
	err := start(c)
	if err == nil {
		err = c.Wait()
	}
	res := RunResult{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitCode()
	case err != nil:
		return RunResult{}, fmt.Errorf("run %s on %s: %w", argv[0], id, err)
	}
	return res, nil
}

// limitedBuffer keeps the first 1 MiB written to it.
type limitedBuffer struct{ b *bytes.Buffer }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 1<<20 - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// Task is a one-off command run once before the fleet launches (the spec's
// app.release: migrations, seed data), like an ECS run-task.
type Task struct {
	// Command is the program and its arguments. Required.
	Command []string
	// Env is its whole environment.
	Env []string
	// Log receives every output line. Required.
	Log *os.File
	// Stdout, when set, receives the standard output instead of Log (which
	// keeps the standard error): for a task whose output is data.
	Stdout io.Writer
	// Progress, when set, is told an output line at most every 2 s.
	Progress func(line string)
	// Sandbox, when set, runs the task unprivileged, as the instances run
	// (Config.Sandbox). Default nil: as the daemon's user.
	Sandbox *sandbox.Profile
	// Start starts the task's process where it runs (inside a network
	// namespace: vpc.Namespace.Start). Default exec.Cmd.Start.
	Start func(*exec.Cmd) error
}

// RunTask runs t in its own process group (killed with it when ctx ends)
// and waits for it.
func RunTask(ctx context.Context, t Task) error {
	c := exec.CommandContext(ctx, t.Command[0], t.Command[1:]...)
	c.Env = t.Env
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	if err := dropPrivileges(c, t.Sandbox); err != nil {
		return fmt.Errorf("start %s: %w", t.Command[0], err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	c.Stdout, c.Stderr = pw, pw
	if t.Stdout != nil {
		c.Stdout = t.Stdout
	}
	start := t.Start
	if start == nil {
		start = (*exec.Cmd).Start
	}
	if err := start(c); err != nil {
		pw.Close()
		pr.Close()
		return fmt.Errorf("start %s: %w", t.Command[0], err)
	}
	pw.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Split(scanLinesOrCR)
		last := time.Time{}
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			fmt.Fprintln(t.Log, line)
			if t.Progress != nil && line != "" && time.Since(last) > 2*time.Second {
				t.Progress(line)
				last = time.Now()
			}
		}
	}()
	err = c.Wait()
	<-done
	pr.Close()
	return err
}

// scanLinesOrCR splits on \n or \r so progress bars come through line by line.
func scanLinesOrCR(data []byte, atEOF bool) (int, []byte, error) {
	for i, b := range data {
		if b == '\n' || b == '\r' {
			return i + 1, data[:i], nil
		}
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// dropPrivileges makes cmd start in profile's sandbox (nil: unchanged). It
// is the last step before a start, so that whoever starts cmd (a cgroup,
// a network namespace) composes with it.
func dropPrivileges(cmd *exec.Cmd, profile *sandbox.Profile) error {
	if profile == nil {
		return nil
	}
	if err := profile.Wrap(cmd); err != nil {
		return fmt.Errorf("drop privileges: %w", err)
	}
	return nil
}
