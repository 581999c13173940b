package objstore

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/haven-platform/haven/internal/iam"
)

// daemonEnv makes the test binary act as a short-lived daemon: it starts a
// store for the directory in its argument with Process and exits without
// stopping it, as a crashing or upgraded daemon would.
const daemonEnv = "HAVEN_OBJSTORE_TEST_DAEMON"

func init() {
	if os.Getenv(daemonEnv) != "1" {
		return
	}
	exe, _ := os.Executable()
	env := []string{serveEnv + "=1"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, daemonEnv+"=") {
			env = append(env, kv)
		}
	}
	p := &Process{Dir: os.Args[len(os.Args)-1], Command: []string{exe}, Env: env}
	if err := p.Start(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(p.PID())
	os.Exit(0)
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// TestProcessOutlivesDaemon: a store started by a daemon that then exits
// keeps serving, in its own session; a new daemon adopts it and stops it,
// leaving no process, pid file or socket; its data outlives it too.
func TestProcessOutlivesDaemon(t *testing.T) {
	cfg := baseConfig(t)
	dir := t.TempDir()
	must(t, WriteConfig(dir, cfg))
	exe, err := os.Executable()
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	daemon := exec.CommandContext(ctx, exe, dir)
	daemon.Env = append(os.Environ(), daemonEnv+"=1")
	out, err := daemon.Output()
	if err != nil {
		t.Fatalf("daemon: %v\n%s", err, out)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	must(t, err)
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL); checkRaces(t, dir) })
	if !alive(pid) {
		t.Fatalf("the store (pid %d) died with its daemon", pid)
	}
	if sid, _, errno := syscall.RawSyscall(syscall.SYS_GETSID, uintptr(pid), 0, 0); errno != 0 || int(sid) != pid {
		t.Errorf("the store's session is %d, want its own (%d)", sid, pid)
	}

	// The next daemon adopts it.
	p := testProcess(t, dir)
	if err := p.Start(ctx); err == nil || !strings.Contains(err.Error(), "already serves") {
		t.Fatalf("Start over a running store: %v", err)
	}
	if _, err := lockDir(dir); err == nil || !strings.Contains(err.Error(), "pid "+strconv.Itoa(pid)) {
		t.Fatalf("a second server on the same directory: %v", err)
	}
	ok, err := p.Adopt(ctx)
	if err != nil || !ok || p.PID() != pid {
		t.Fatalf("Adopt = %v, %v, pid %d; want true, pid %d", ok, err, p.PID(), pid)
	}
	st := &store{t: t, dir: dir, cfg: cfg, proc: p, client: p.Client(), url: "http://" + cfg.Listen}
	defer st.client.Close()
	st.iss = mustIssuer(t)
	st.app = st.issue(appRole, "i-0aaaaaaaaaaaaaaa1")
	app := st.s3(st.app)
	_, err = app.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("uploads"), Key: aws.String("kept.txt"), Body: strings.NewReader("kept")})
	must(t, err)

	must(t, p.Stop(ctx))
	if alive(pid) {
		t.Fatalf("pid %d alive after Stop", pid)
	}
	for _, f := range []string{PIDFile, SocketFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Errorf("%s left after Stop: %v", f, err)
		}
	}
	if ok, err := p.Adopt(ctx); ok || err != nil {
		t.Fatalf("Adopt after Stop = %v, %v; want false, nil", ok, err)
	}
	must(t, p.Stop(ctx)) // stopping a stopped store is a no-op

	// Restarted, the store has the object but not the credential: those live
	// in memory only and are registered again by the daemon.
	must(t, p.Start(ctx))
	defer p.Stop(context.Background())
	_, err = app.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("uploads"), Key: aws.String("kept.txt")})
	wantCode(t, "get before the credential is registered again", err, "InvalidAccessKeyId")
	must(t, st.client.PutCredentials(ctx, st.app))
	got, err := app.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("uploads"), Key: aws.String("kept.txt")})
	must(t, err)
	b, _ := io.ReadAll(got.Body)
	got.Body.Close()
	if string(b) != "kept" {
		t.Fatalf("after restart: %q", b)
	}
}

// TestProcessKillAfterTimeout: a store that does not stop on SIGTERM (here it
// is frozen) is killed after StopTimeout, and a new one starts in its place.
func TestProcessKillAfterTimeout(t *testing.T) {
	st := startStore(t, baseConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pid := st.proc.PID()
	must(t, syscall.Kill(pid, syscall.SIGSTOP))
	st.proc.StopTimeout = 300 * time.Millisecond
	must(t, st.proc.Stop(ctx))
	if alive(pid) {
		t.Fatalf("pid %d survived Stop", pid)
	}
	if _, err := os.Stat(filepath.Join(st.dir, PIDFile)); !os.IsNotExist(err) {
		t.Errorf("pid file left after the kill: %v", err)
	}
	// The stale socket is replaced by the next start.
	must(t, st.proc.Start(ctx))
	if h, err := st.client.Health(ctx); err != nil || !h.Ready || h.PID == pid {
		t.Fatalf("health after restart: %+v, %v", h, err)
	}
}

// TestProcessStartFailure: a store that cannot start (its port is taken)
// makes Start fail with the reason from its log, and leaves nothing running.
func TestProcessStartFailure(t *testing.T) {
	cfg := baseConfig(t)
	blocker := startStore(t, cfg) // holds cfg.Listen
	dir := t.TempDir()
	must(t, WriteConfig(dir, cfg))
	p := testProcess(t, dir)
	err := p.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "exited before it served") || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Start on a taken port: %v", err)
	}
	if running, _ := p.running(); running {
		t.Fatal("a failed start left a store running")
	}
	_ = blocker
	// Without a configuration nothing is started at all.
	empty := testProcess(t, t.TempDir())
	if err := empty.Start(context.Background()); err == nil || !strings.Contains(err.Error(), ConfigFile) || empty.PID() != 0 {
		t.Fatalf("Start without config.json: %v (pid %d)", err, empty.PID())
	}
}

// TestReload: a new configuration is applied by POST /v1/reload and by
// SIGHUP (a new bucket, a changed policy and limit); one that changes what
// needs a restart, or is invalid, is refused and the running one stays.
func TestReload(t *testing.T) {
	cfg := baseConfig(t)
	st := startStore(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	app := st.s3(st.app)
	_, err := app.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("reports"), Key: aws.String("r.csv"), Body: strings.NewReader("r")})
	wantCode(t, "put before the bucket exists", err, "NoSuchBucket")

	next := cfg
	next.Buckets = append(append([]Bucket{}, cfg.Buckets...), Bucket{Name: "reports"})
	next.Roles = map[string][]iam.Policy{appRole: {policy(allowS3([]string{"s3:PutObject"}, "arn:aws:s3:::reports/*"))}, edgeRole: {}}
	next.MaxUploadBytes = 1 << 20
	must(t, WriteConfig(st.dir, next))
	must(t, st.client.Reload(ctx))
	_, err = app.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("reports"), Key: aws.String("r.csv"), Body: strings.NewReader("r")})
	must(t, err)
	_, err = app.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("uploads"), Key: aws.String("u"), Body: strings.NewReader("u")})
	wantCode(t, "put where the new identity policy allows nothing", err, "AccessDenied")
	s := st.waitStatus("generation 2", func(s Status) bool { return s.Generation == 2 })
	if _, ok := s.Bucket("reports"); !ok || s.MaxUploadBytes != 1<<20 {
		t.Fatalf("after reload: %+v", s)
	}

	moved := next
	moved.Listen = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	must(t, WriteConfig(st.dir, moved))
	if err := st.client.Reload(ctx); err == nil || !strings.Contains(err.Error(), "restart the object store") {
		t.Fatalf("reload with a new listen address: %v", err)
	}
	must(t, os.WriteFile(filepath.Join(st.dir, ConfigFile), []byte(`{"listen":"`+cfg.Listen+`","buckets":[{"name":"Bad_Name"}]}`), 0o600))
	if err := st.client.Reload(ctx); err == nil || !strings.Contains(err.Error(), "objstore.buckets[0].name") {
		t.Fatalf("reload of an invalid file: %v", err)
	}
	if h, _ := st.client.Health(ctx); h.Generation != 2 {
		t.Fatalf("a refused reload changed the generation to %d", h.Generation)
	}

	// SIGHUP rereads the file too.
	must(t, WriteConfig(st.dir, cfg))
	must(t, syscall.Kill(st.proc.PID(), syscall.SIGHUP))
	st.waitStatus("generation 3 after SIGHUP", func(s Status) bool { return s.Generation == 3 && s.MaxUploadBytes == cfg.MaxUploadBytes })
	_, err = app.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("uploads"), Key: aws.String("u"), Body: strings.NewReader("u")})
	must(t, err)
}
