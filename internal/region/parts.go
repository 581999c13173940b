package region

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/fleet"
	"github.com/haven-platform/haven/internal/lb"
)

// balancer adapts the load balancer's target group to the fleet's Balancer.
type balancer struct{ l *lb.LB }

func (b balancer) Register(t fleet.Target) error {
	return b.l.Register(lb.Target{ID: t.ID, Zone: t.Zone, Addr: t.Addr})
}

func (b balancer) Deregister(ctx context.Context, id string) error { return b.l.Deregister(ctx, id) }

func (b balancer) TargetHealth(id string) (string, bool) {
	s, ok := b.l.TargetHealth(id)
	return string(s), ok
}

func tlsConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// resolveCommand finds the program next to the haven binary first, then on PATH.
func (r *Region) resolveCommand(cmd []string) ([]string, error) {
	out := append([]string(nil), cmd...)
	prog := cmd[0]
	if strings.ContainsRune(prog, '/') {
		abs, err := filepath.Abs(prog)
		if err != nil {
			return nil, err
		}
		out[0] = abs
		return out, nil
	}
	if r.opts.BinDir != "" {
		p := filepath.Join(r.opts.BinDir, prog)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			out[0] = p
			return out, nil
		}
	}
	p, err := exec.LookPath(prog)
	if err != nil {
		return nil, fmt.Errorf("app.command: program %q is neither next to haven (%s) nor on PATH; build it (go build -o bin/ ./cmd/...) or give a path", prog, r.opts.BinDir)
	}
	out[0] = p
	return out, nil
}

// runRelease runs app.release once, with an instance's environment, and
// streams its last output lines into the progress log.
func (r *Region) runRelease(ctx context.Context) error {
	cmd, err := r.resolveCommand(r.spec.App.Release)
	if err != nil {
		return fmt.Errorf("app.release: %w", err)
	}
	r.say("release: running %s", strings.Join(r.spec.App.Release, " "))
	logPath := filepath.Join(r.opts.StateDir, "logs", "release.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	c := exec.CommandContext(ctx, cmd[0], cmd[1:]...)
	c.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range r.appEnv() {
		c.Env = append(c.Env, k+"="+v)
	}
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	c.Stdout, c.Stderr = pw, pw
	if err := c.Start(); err != nil {
		pw.Close()
		pr.Close()
		return fmt.Errorf("app.release: start %s: %w", cmd[0], err)
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
			fmt.Fprintln(logf, line)
			if line != "" && time.Since(last) > 2*time.Second {
				r.say("release: %s", line)
				last = time.Now()
			}
		}
	}()
	err = c.Wait()
	<-done
	pr.Close()
	if err != nil {
		return fmt.Errorf("app.release %v failed: %w; its output is in %s", r.spec.App.Release, err, logPath)
	}
	r.say("release: done")
	return nil
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

// warnInertScaling says plainly which spec settings the local region does not act on yet.
func (r *Region) warnInertScaling() {
	for _, p := range r.spec.Fleet.Scaling {
		if p.TargetTracking != "" {
			r.warn(fmt.Sprintf("fleet.scaling: target tracking on %s is not acted on locally yet; capacity stays at desired unless changed with `haven fleet scale`", p.TargetTracking))
			break
		}
	}
	if r.spec.Edge.Listen != "" {
		r.warn(fmt.Sprintf("edge.listen %s: the local edge cache is not built yet; use the load balancer's address", r.spec.Edge.Listen))
	}
}

// Status is a snapshot of the whole region.
func (r *Region) Status() api.Status {
	s := r.spec
	v := r.view()
	r.mu.Lock()
	st := api.Status{
		Region: s.Name, Phase: r.phase, Error: r.err, StartedAt: r.started, StateDir: r.opts.StateDir,
		PID: os.Getpid(), Progress: append([]string(nil), r.progress...), Warnings: append([]string(nil), r.warnings...),
		Endpoints: api.Endpoints{CACert: r.caPath(), Database: s.Database.Endpoint},
		Instances: []api.Instance{},
	}
	r.mu.Unlock()
	hc := s.App.HealthCheck
	st.LB = api.LB{
		Algorithm: s.LoadBalancer.Algorithm, HealthCheckPath: hc.Path,
		IntervalMS: hc.Interval.D().Milliseconds(), TimeoutMS: hc.Timeout.D().Milliseconds(),
		HealthyThreshold: hc.Healthy, UnhealthyThreshold: hc.Unhealthy,
	}
	for _, z := range v.zones {
		st.Zones = append(st.Zones, api.Zone{Name: z.Name, AZ: z.AZ, CIDR: z.CIDR.String()})
	}
	st.Fleet = api.Fleet{Min: s.Fleet.Min, Desired: s.Fleet.Desired, Max: s.Fleet.Max, HealthCheckType: s.Fleet.HealthCheckType}
	st.Endpoints.Secrets = v.secretsEndpoint
	if v.lb != nil {
		st.Endpoints.HTTPS = v.lb.HTTPSURL()
		if a := v.lb.HTTPAddr(); a != "" {
			st.Endpoints.HTTP = "http://" + a
		}
		ls := v.lb.Stats()
		st.LB.Requests, st.LB.Retries, st.LB.Ejections, st.LB.Errors5xx = int64(ls.Requests), int64(ls.Retries), int64(ls.Ejections), int64(ls.Responses5xx)
	}
	inflight := map[string]int64{}
	targets := map[string]string{}
	if v.lb != nil {
		for _, t := range v.lb.Targets() {
			inflight[t.ID] = t.InFlight
			targets[t.ID] = string(t.State)
		}
	}
	if v.fleet != nil {
		c := v.fleet.Capacity()
		st.Fleet.Min, st.Fleet.Desired, st.Fleet.Max = c.Min, c.Desired, c.Max
		for _, in := range v.fleet.Instances() {
			ai := api.Instance{
				ID: in.ID, Zone: in.Zone, AZ: in.AZ, Address: in.Address, PID: in.PID,
				State: string(in.State), Health: string(in.Health), InFlight: int(inflight[in.ID]), Target: targets[in.ID], LaunchedAt: in.LaunchedAt,
			}
			st.Instances = append(st.Instances, ai)
			if ai.State == "in-service" {
				st.Fleet.InService++
				if ai.Health == "healthy" {
					st.Fleet.Healthy++
				}
			}
		}
	}
	if v.db != nil {
		ds := v.db.Status()
		d := &api.Database{Endpoint: s.Database.Endpoint, Epoch: int64(ds.State.Epoch), Primary: ds.State.Primary}
		for _, n := range ds.Nodes {
			d.Nodes = append(d.Nodes, api.DBNode{Name: n.Name, Zone: n.Zone, Address: n.Addr, Role: n.Role, State: n.Health, PID: n.Pid})
		}
		st.Database = d
	}
	return st
}

func (r *Region) signalInstance(id string, sig syscall.Signal) error {
	f := r.view().fleet
	if f == nil {
		return fmt.Errorf("instance %s: the fleet is not running", id)
	}
	return f.Signal(id, sig)
}

func (r *Region) setCapacity(c api.CapacityRequest) error {
	f := r.view().fleet
	if f == nil {
		return fmt.Errorf("set capacity: the fleet is not running")
	}
	cur := f.Capacity()
	if c.Min != nil {
		cur.Min = *c.Min
	}
	if c.Desired != nil {
		cur.Desired = *c.Desired
	}
	if c.Max != nil {
		cur.Max = *c.Max
	}
	return f.SetCapacity(cur.Min, cur.Desired, cur.Max)
}
