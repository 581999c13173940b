package objstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/versity/versitygw/auth"
	"github.com/versity/versitygw/backend"
	"github.com/versity/versitygw/backend/meta"
	"github.com/versity/versitygw/backend/posix"
	"github.com/versity/versitygw/s3api"
	"github.com/versity/versitygw/s3api/middlewares"
	"github.com/versity/versitygw/s3err"

	"github.com/haven-platform/haven/internal/atomicfile"
)

// Connection and request caps handed to versitygw.
const (
	maxConnections = 10000
	maxRequests    = 10000
	maxParts       = 10000 // S3's limit
	// bucketOwner owns every bucket in versitygw's ACL bookkeeping. It is no
	// access key, so ACLs grant nobody anything and policies decide.
	bucketOwner = "haven-objstore"
)

// server is one running object store.
type server struct {
	cfg   Config // as started; reload swaps the parts that may change
	log   *slog.Logger
	dir   string
	keys  *Keyring
	gw    *gatewayIAM
	be    *limitedBackend
	stats *stats

	mu      sync.Mutex // serialises reloads
	live    atomic.Pointer[Config]
	gen     atomic.Int64
	max     atomic.Int64 // MaxUploadBytes of the live configuration
	started time.Time
}

// Main is the object store's entry point, exposed by the CLI as the hidden
// `haven objstore serve`. It reads --dir DIR/config.json, serves until ctx
// ends or SIGTERM/SIGINT arrives, and reloads the configuration on SIGHUP.
// Logs are JSON on stderr.
func Main(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("objstore serve", flag.ContinueOnError)
	dir := fs.String("dir", "", "state directory holding "+ConfigFile+" (required)")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() > 0 {
		return errors.New("objstore serve: usage: objstore serve --dir DIR [--log-level LEVEL]")
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("objstore serve: --log-level: %w", err)
	}
	cfg, err := LoadConfig(*dir)
	if err != nil {
		return err
	}
	cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	return serve(ctx, cfg, hup)
}

// Serve runs the object store in this process until ctx ends: the S3
// endpoint on cfg.Listen (versitygw's gateway over its posix backend, data in
// cfg.Dir/data) and the control socket cfg.Dir/admin.sock. versitygw keeps
// process-wide state (it changes the working directory, and its bucket-name
// and debug settings are globals), so run one store per process: the region
// runs it as its own process through Process.
func Serve(ctx context.Context, cfg Config) error { return serve(ctx, cfg, nil) }

func serve(ctx context.Context, cfg Config, hup <-chan os.Signal) (err error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("start object store: %w", err)
	}
	if err := checkDecisionsType(); err != nil {
		return fmt.Errorf("start object store: %w", err)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return fmt.Errorf("start object store: %w", err)
	}
	cfg.Dir = dir
	s := &server{cfg: cfg, dir: dir, log: cfg.Logger.With("component", "objstore"), stats: newStats(), started: cfg.Clock.Now()}
	if err := os.MkdirAll(filepath.Join(dir, DataDir), 0o700); err != nil {
		return fmt.Errorf("start object store: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer unlock()
	if err := atomicfile.WriteFile(filepath.Join(dir, PIDFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		return fmt.Errorf("start object store: %w", err)
	}
	defer os.Remove(filepath.Join(dir, PIDFile))

	pb, err := openPosix(dir, s.log)
	if err != nil {
		return err
	}
	defer pb.Shutdown()
	s.max.Store(cfg.MaxUploadBytes)
	s.be = &limitedBackend{Backend: pb, max: &s.max, rejected: func() { s.stats.rejected.Add(1) }}
	s.keys = NewKeyring(cfg.Account, cfg.Clock)
	s.gw = newGatewayIAM(s.keys, cfg)
	if err := s.applyBuckets(ctx, cfg); err != nil {
		return err
	}
	s.live.Store(&cfg)
	s.gen.Store(1)

	root, err := randomRoot()
	if err != nil {
		return fmt.Errorf("start object store: %w", err)
	}
	gw, err := s3api.New(s.be, root, cfg.Region, s.gw, nil, nil, nil, metricsSink{s.stats},
		s3api.WithQuiet(),
		s3api.WithKeepAlive(),
		s3api.WithConcurrencyLimiter(maxConnections, maxRequests),
		s3api.WithMpMaxParts(maxParts),
		s3api.WithDisableACL(),
		s3api.WithMiddleware("/", s.limitMiddleware),
		s3api.WithOnListen(func() { s.stats.ready.Store(true) }),
	)
	if err != nil {
		return fmt.Errorf("start object store: init gateway: %w", err)
	}

	admin, err := s.listenAdmin()
	if err != nil {
		return err
	}
	adminSrv := &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
	errc := make(chan error, 2)
	go func() { errc <- gw.ServeMultiPort([]string{cfg.Listen}) }()
	go func() {
		if err := adminSrv.Serve(admin); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("serve control socket: %w", err)
		}
	}()

	loopCtx, stopLoops := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { s.runLoops(loopCtx) })
	s.log.Info("object store started", "endpoint", "http://"+cfg.Listen, "dir", dir, "buckets", cfg.bucketNames(),
		"max_upload_bytes", cfg.MaxUploadBytes, "abort_incomplete_after", cfg.abortAfter().String())

	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case err = <-errc:
			err = fmt.Errorf("object store: %w", err)
			done = true
		case <-hup:
			if rerr := s.reload(ctx); rerr != nil {
				s.log.Error("reload refused", "err", rerr)
			}
		}
	}
	stopLoops()
	wg.Wait()
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if serr := gw.ShutDown(); serr != nil {
		s.log.Warn("stop S3 endpoint", "err", serr)
	}
	_ = adminSrv.Shutdown(shutCtx)
	_ = os.Remove(filepath.Join(dir, SocketFile))
	s.log.Info("object store stopped")
	return err
}

// openPosix opens versitygw's posix backend over dir/data. Object metadata
// goes to extended attributes, or, where the filesystem has none (or dir/meta
// already exists), to sidecar files under dir/meta.
func openPosix(dir string, log *slog.Logger) (*posix.Posix, error) {
	data, side := filepath.Join(dir, DataDir), filepath.Join(dir, "meta")
	opts := posix.PosixOpts{NewDirPerm: 0o700, NewFilePerm: 0o600}
	var ms meta.MetadataStorer = meta.XattrMeta{}
	_, sideErr := os.Stat(side)
	xerr := meta.XattrMeta{}.Test(data)
	if sideErr == nil || xerr != nil {
		if xerr != nil {
			log.Warn("object metadata goes to sidecar files: the filesystem has no user extended attributes", "dir", side, "reason", xerr)
		}
		if err := os.MkdirAll(side, 0o700); err != nil {
			return nil, fmt.Errorf("start object store: %w", err)
		}
		sc, err := meta.NewSideCar(side)
		if err != nil {
			return nil, fmt.Errorf("start object store: sidecar metadata in %s: %w", side, err)
		}
		ms, opts.SideCarDir = sc, side
	}
	pb, err := posix.New(data, ms, opts)
	if err != nil {
		return nil, fmt.Errorf("start object store: posix backend in %s: %w", data, err)
	}
	return pb, nil
}

// lockDir takes an exclusive lock on dir/objstore.lock for the life of the
// server, so two servers never share a state directory.
func lockDir(dir string) (func(), error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start object store: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		pid, _ := os.ReadFile(filepath.Join(dir, PIDFile))
		return nil, fmt.Errorf("start object store: another object store serves %s (pid %s): stop it first, or adopt it", dir, strings.TrimSpace(string(pid)))
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// randomRoot makes versitygw's root account: it bypasses every policy, so its
// keys are random, held only in this process's memory, and never used.
func randomRoot() (middlewares.RootUserConfig, error) {
	b := make([]byte, 48)
	if _, err := rand.Read(b); err != nil {
		return middlewares.RootUserConfig{}, err
	}
	const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyz"
	s := make([]byte, len(b))
	for i, c := range b {
		s[i] = alnum[int(c)%len(alnum)]
	}
	return middlewares.RootUserConfig{Access: "HAVENROOT" + string(s[:16]), Secret: string(s[16:])}, nil
}

// applyBuckets creates the configured buckets that are missing and sets each
// one's CORS rules and policy (removing them when the configuration has none).
func (s *server) applyBuckets(ctx context.Context, cfg Config) error {
	acl, err := json.Marshal(auth.ACL{Owner: bucketOwner})
	if err != nil {
		return err
	}
	for _, b := range cfg.Buckets {
		name := b.Name
		if _, err := s.be.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &name}); err != nil {
			if !isCode(err, "NoSuchBucket") && !isCode(err, "NotFound") {
				return fmt.Errorf("check bucket %s: %w", name, err)
			}
			// versitygw's posix backend reads the owner from this context key.
			octx := context.WithValue(ctx, "bucket-owner", auth.Account{Access: bucketOwner, Role: auth.RoleUser}) //nolint:staticcheck // versitygw's key
			in := &s3.CreateBucketInput{Bucket: &name, CreateBucketConfiguration: &types.CreateBucketConfiguration{}}
			if err := s.be.CreateBucket(octx, in, acl); err != nil && !isCode(err, "BucketAlreadyOwnedByYou") {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
			s.log.Info("bucket created", "bucket", name)
		}
		cors, err := b.corsXML()
		if err != nil {
			return fmt.Errorf("bucket %s: cors: %w", name, err)
		}
		if cors == nil {
			if err := s.be.DeleteBucketCors(ctx, name); err != nil && !isCode(err, "NoSuchCORSConfiguration") {
				return fmt.Errorf("remove CORS rules of bucket %s: %w", name, err)
			}
		} else if err := s.be.PutBucketCors(ctx, name, cors); err != nil {
			return fmt.Errorf("set CORS rules of bucket %s: %w", name, err)
		}
		pol := bytes.TrimSpace(b.Policy)
		if len(pol) == 0 || string(pol) == "null" {
			if err := s.be.DeleteBucketPolicy(ctx, name); err != nil && !isCode(err, "NoSuchBucketPolicy") {
				return fmt.Errorf("remove policy of bucket %s: %w", name, err)
			}
			continue
		}
		if err := s.be.PutBucketPolicy(ctx, name, pol); err != nil {
			return fmt.Errorf("set policy of bucket %s: %w", name, err)
		}
	}
	return nil
}

func isCode(err error, code string) bool {
	var se s3err.S3Error
	return errors.As(err, &se) && se.BaseError().Code == code
}

// reload rereads dir/config.json and applies buckets, policies, roles and the
// upload limit. Listen, region and account need a restart; a configuration
// changing them is refused and the running one stays.
func (s *server) reload(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next, err := LoadConfig(s.dir)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	cur := s.live.Load()
	switch {
	case next.Listen != cur.Listen:
		return fmt.Errorf("reload: listen changed from %s to %s: restart the object store to apply it", cur.Listen, next.Listen)
	case next.Region != cur.Region:
		return fmt.Errorf("reload: region changed from %s to %s: restart the object store to apply it", cur.Region, next.Region)
	case next.Account != cur.Account:
		return fmt.Errorf("reload: account changed from %s to %s: restart the object store to apply it", cur.Account, next.Account)
	}
	next.Dir, next.Clock, next.Logger = s.dir, s.cfg.Clock, s.cfg.Logger
	if err := s.applyBuckets(ctx, next); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	s.gw.setConfig(next)
	s.max.Store(next.MaxUploadBytes)
	s.live.Store(&next)
	s.gen.Add(1)
	s.scan(ctx)
	s.publish()
	s.log.Info("configuration reloaded", "buckets", next.bucketNames(), "max_upload_bytes", next.MaxUploadBytes)
	return nil
}

// runLoops publishes status, recounts objects and runs the lifecycle rule on
// the configured clock until ctx ends.
func (s *server) runLoops(ctx context.Context) {
	cfg := s.live.Load()
	pub := cfg.Clock.NewTicker(time.Duration(cfg.PublishInterval))
	scan := cfg.Clock.NewTicker(time.Duration(cfg.ScanInterval))
	sweep := cfg.Clock.NewTicker(time.Duration(cfg.SweepInterval))
	defer pub.Stop()
	defer scan.Stop()
	defer sweep.Stop()
	s.scan(ctx)
	s.publish()
	for {
		select {
		case <-ctx.Done():
			return
		case <-pub.C():
			s.publish()
		case <-scan.C():
			s.scan(ctx)
			s.publish()
		case <-sweep.C():
			s.sweep(ctx)
			s.publish()
		}
	}
}

func (s *server) sweep(ctx context.Context) {
	defer s.recoverLoop("lifecycle")
	n, err := sweepUploads(ctx, s.be, *s.live.Load(), s.log)
	s.stats.aborted.Add(int64(n))
	if err != nil && ctx.Err() == nil {
		s.log.Warn("lifecycle rule", "err", err)
	}
}

func (s *server) scan(ctx context.Context) {
	defer s.recoverLoop("scan")
	cfg := s.live.Load()
	buckets, err := scanBuckets(ctx, s.be, *cfg)
	res := scanResult{at: cfg.Clock.Now(), buckets: buckets}
	if err != nil {
		res.err = err.Error()
	}
	s.stats.scanMu.Lock()
	s.stats.scan = res
	s.stats.scanMu.Unlock()
}

func (s *server) publish() *Status {
	cfg := s.live.Load()
	base := Status{PID: os.Getpid(), Endpoint: "http://" + cfg.Listen, Region: cfg.Region, Started: s.started,
		MaxUploadBytes: s.max.Load(), Generation: s.gen.Load()}
	return s.stats.publish(base, cfg.Clock.Now(), s.keys.Live())
}

func (s *server) recoverLoop(what string) {
	if r := recover(); r != nil {
		s.log.Error("panic in "+what+" loop", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	}
}

// Status returns the latest published snapshot.
func (s *server) status() *Status {
	if st := s.stats.current.Load(); st != nil {
		return st
	}
	return s.publish()
}

// Compile-time guard: the limited backend is a whole versitygw backend.
var _ backend.Backend = (*limitedBackend)(nil)
