package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/plan"
	"github.com/haven-platform/haven/internal/region"
	"github.com/haven-platform/haven/internal/spec"
)

func newUpCmd(g *globals) *cobra.Command {
	var detach, takeover bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Bring up the local region: zones, database, load balancer and fleet",
		Long: `Bring up the local region described by the spec.

In the foreground it shows progress and a compact live status; Ctrl-C stops
everything. With --detach it starts the daemon in the background and returns
once fleet.min instances are healthy behind the load balancer.

After a daemon crash, up adopts what still runs (instances, database
servers, the load balancer, the network) instead of relaunching it. With
--takeover, a daemon that is running hands the region over to this binary
(an upgrade): it exits leaving everything running, this one adopts it, and
the load balancer moves to this binary's by a hot restart.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := spec.LoadFile(g.specFile)
			if err != nil {
				return err
			}
			dir := g.dir()
			if st, err := g.client().Status(cmd.Context()); err == nil {
				if h := plan.Hash(s); st.Spec.Hash != "" && h != st.Spec.Hash {
					// A takeover hands the region over as it runs: a changed
					// spec goes through plan and apply, with or without it.
					return fmt.Errorf("start region: region %q is already running in %s on spec %s, and %s is spec %s: run `haven plan -f %s` to see the changes and `haven apply -f %s` to make them without downtime",
						st.Region, dir, st.Spec.Hash, g.specFile, h, g.specFile, g.specFile)
				}
				if !takeover {
					return fmt.Errorf("start region: region %q is already running in %s (daemon pid %d, version %s); stop it with `haven down --state-dir %s`, hand it over to this binary with `haven up --takeover`, or pick another --state-dir", st.Region, dir, st.PID, st.Version, dir)
				}
				if err := handOver(cmd.Context(), g, st, cmd.ErrOrStderr()); err != nil {
					return err
				}
			}
			if detach {
				return upDetached(cmd.Context(), g, dir, timeout, cmd.OutOrStdout(), cmd.ErrOrStderr())
			}
			return upForeground(cmd.Context(), g, s, dir, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	addSpecFlag(cmd, g)
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "run the daemon in the background; return once the region is ready")
	cmd.Flags().DurationVar(&timeout, "timeout", 15*time.Minute, "with --detach, how long to wait for the region to become ready")
	cmd.Flags().BoolVar(&takeover, "takeover", false, "take the region over from the daemon running it (an upgrade): it exits leaving everything running, this binary adopts it")
	return cmd
}

// newDaemonCmd is the detached daemon's entry point; `up --detach` starts it.
func newDaemonCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:    "daemon",
		Short:  "Run the region's control plane in this process (used by up --detach)",
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := spec.LoadFile(g.specFile)
			if err != nil {
				return err
			}
			logger := slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil))
			err = region.Run(cmd.Context(), region.Options{Spec: s, SpecFile: g.specFile, SpecSHA256: fileSHA256(g.specFile), StateDir: g.dir(), BinDir: binDir(), Logger: logger})
			if errors.Is(err, region.ErrHandedOver) {
				return nil
			}
			return err
		},
	}
	addSpecFlag(cmd, g)
	return cmd
}

// handOver asks the running daemon to hand the region over and waits for
// it to exit.
func handOver(ctx context.Context, g *globals, st api.Status, stderr io.Writer) error {
	fmt.Fprintf(stderr, "haven: taking region %q over from daemon pid %d (version %s)\n", st.Region, st.PID, st.Version)
	if err := g.client().Handover(ctx); err != nil {
		return fmt.Errorf("take over: %w", err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for syscall.Kill(st.PID, 0) == nil {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", st.PID)); err == nil && strings.Contains(string(b), ") Z ") {
			break // exited, not yet reaped by its parent
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("take over: daemon pid %d did not exit within 2 minutes after handing over", st.PID)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// fileSHA256 is the hex SHA-256 of a file, "" when it cannot be read (drill
// reports name the spec by it).
func fileSHA256(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// binDir is the directory of the running haven binary: app binaries such as
// courses are looked up there before PATH.
func binDir() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	return filepath.Dir(exe)
}

func upForeground(ctx context.Context, g *globals, s spec.Spec, dir string, stdout, stderr io.Writer) error {
	logf, err := openDaemonLog(dir)
	if err != nil {
		return err
	}
	defer logf.Close()
	logger := slog.New(slog.NewJSONHandler(logf, nil))
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- region.Run(runCtx, region.Options{Spec: s, SpecFile: g.specFile, SpecSHA256: fileSHA256(g.specFile), StateDir: dir, BinDir: binDir(), Logger: logger})
	}()
	fmt.Fprintf(stderr, "haven: bringing up region %q (state %s, log %s); Ctrl-C stops it\n", s.Name, dir, logf.Name())
	w := newWatcher(g.client(), stderr)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	ready := false
	var lastTable string
	lastPrint := time.Time{}
	for {
		select {
		case err := <-done:
			if errors.Is(err, region.ErrHandedOver) {
				fmt.Fprintln(stderr, "haven: region handed over to another daemon; it keeps running")
				return nil
			}
			if err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("region stopped: %w (see %s)", err, logf.Name())
			}
			fmt.Fprintln(stderr, "haven: region stopped; no process of it is left running")
			return nil
		case <-tick.C:
			st, err := w.poll(ctx)
			if err != nil {
				continue
			}
			if st.Phase == api.PhaseFailed {
				// Nothing will bring a failed start back: stop what did
				// start, then say why.
				fmt.Fprintln(stderr, "haven: the region failed to start; stopping what did start")
				stop()
				<-done
				return fmt.Errorf("region failed to start: %s; the log %s has the details", st.Error, logf.Name())
			}
			if st.Phase == api.PhaseReady && !ready {
				ready = true
				printReady(stdout, st)
			}
			if ready && time.Since(lastPrint) > 2*time.Second {
				tbl := compactStatus(st)
				if tbl != lastTable {
					fmt.Fprint(stdout, tbl)
					lastTable = tbl
				}
				lastPrint = time.Now()
			}
		}
	}
}

// openDaemonLog creates the state dir if needed and opens its daemon.log
// for appending.
func openDaemonLog(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "daemon.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open daemon log: %w", err)
	}
	return f, nil
}

func upDetached(ctx context.Context, g *globals, dir string, timeout time.Duration, stdout, stderr io.Writer) error {
	logf, err := openDaemonLog(dir)
	if err != nil {
		return err
	}
	defer logf.Close()
	logPath := logf.Name()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	specPath, _ := filepath.Abs(g.specFile)
	c := exec.Command(exe, "daemon", "-f", specPath, "--state-dir", dir)
	c.Stdout, c.Stderr = logf, logf
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	c.Env = os.Environ()
	if err := c.Start(); err != nil {
		return fmt.Errorf("start daemon: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- c.Wait() }()
	fmt.Fprintf(stderr, "haven: daemon started (pid %d, log %s); waiting for the region to become ready\n", c.Process.Pid, logPath)
	w := newWatcher(g.client(), stderr)
	deadline := time.After(timeout)
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted while waiting; the daemon keeps running: `haven status` shows it, `haven down` stops it")
		case err := <-exited:
			return fmt.Errorf("daemon exited before the region was ready (%v); last log lines:\n%s", err, tail(logPath, 15))
		case <-deadline:
			return fmt.Errorf("region not ready after %s; it keeps starting in the background: `haven status` shows it, `haven down` stops it, %s has the log", timeout, logPath)
		case <-tick.C:
			st, err := w.poll(ctx)
			if err != nil {
				continue
			}
			switch st.Phase {
			case api.PhaseReady:
				printReady(stdout, st)
				_ = c.Process.Release()
				return nil
			case api.PhaseFailed:
				return fmt.Errorf("region failed to start: %s; see %s, then `haven down`", st.Error, logPath)
			}
		}
	}
}

// watcher polls the daemon and prints progress lines it has not printed yet.
type watcher struct {
	c       *api.Client
	w       io.Writer
	printed int
}

func newWatcher(c *api.Client, w io.Writer) *watcher { return &watcher{c: c, w: w} }

func (w *watcher) poll(ctx context.Context) (api.Status, error) {
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := w.c.Status(pctx)
	if err != nil {
		return st, err
	}
	for ; w.printed < len(st.Progress); w.printed++ {
		fmt.Fprintln(w.w, "  "+st.Progress[w.printed])
	}
	return st, nil
}

func printReady(w io.Writer, st api.Status) {
	fmt.Fprintf(w, "\nregion %q is ready: %d/%d instances in service over %d zones\n", st.Region, st.Fleet.InService, st.Fleet.Desired, len(st.Zones))
	if st.Endpoints.Edge != "" {
		fmt.Fprintf(w, "  edge       %s   (browse here: static files and materials cached, the rest from the load balancer)\n", st.Endpoints.Edge)
	}
	fmt.Fprintf(w, "  site       %s   (the load balancer)\n", st.Endpoints.HTTPS)
	if st.Endpoints.HTTP != "" {
		fmt.Fprintf(w, "  http       %s (redirects to https)\n", st.Endpoints.HTTP)
	}
	fmt.Fprintf(w, "  ca cert    %s   (curl --cacert %s %s)\n", st.Endpoints.CACert, st.Endpoints.CACert, st.Endpoints.HTTPS)
	fmt.Fprintf(w, "  database   %s\n", st.Endpoints.Database)
	if st.Endpoints.Secrets != "" {
		fmt.Fprintf(w, "  secrets    %s\n", st.Endpoints.Secrets)
	}
	if st.Endpoints.S3 != "" {
		who := "AWS_ENDPOINT_URL_S3 of the app"
		if st.Network.Mode == "vpc" {
			who = "on the host; instances reach it through their zone's interface endpoint"
		}
		fmt.Fprintf(w, "  s3         %s   (%s)\n", st.Endpoints.S3, who)
	}
	for _, warn := range st.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", warn)
	}
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
