// Command courses is a small learning-management app (students, courses,
// materials, grades) written to run as a stateless, failover-tolerant fleet.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "courses:", err)
		os.Exit(1)
	}
}

// run executes one command. It is what tests call.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := &cobra.Command{
		Use:           "courses",
		Short:         "A small LMS: students, courses, materials and grades",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)

	var sc serveConfig
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Run migrations, then serve HTTP until SIGTERM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := sc.Validate(); err != nil {
				return err
			}
			return runServe(cmd.Context(), sc, newLogger(stdout), nil)
		},
	}
	serve.Flags().StringVar(&sc.Listen, "listen", defaultListen(), "address to listen on (default from env HOST and PORT)")
	serve.Flags().DurationVar(&sc.ShutdownTimeout, "shutdown-timeout", 25*time.Second, "how long to wait for in-flight requests on SIGTERM")
	serve.Flags().DurationVar(&sc.StartupTimeout, "startup-timeout", 60*time.Second, "how long to keep retrying migrations while the database is unreachable")
	serve.Flags().Int32Var(&sc.MaxConns, "max-conns", 8, "database pool size")
	serve.Flags().DurationVar(&sc.RetryBudget, "retry-budget", 8*time.Second, "how long one request may retry across a database failover")
	serve.Flags().IntVar(&sc.Throttle.AccountLimit, "login-account-limit", DefaultAccountLimit, "password checks per account per --login-window before logins to it pause")
	serve.Flags().IntVar(&sc.Throttle.ClientLimit, "login-client-limit", DefaultClientLimit, "failed password checks per client address per --login-window before logins from it pause")
	serve.Flags().DurationVar(&sc.Throttle.Window, "login-window", DefaultThrottleWindow, "the login throttle's window")
	serve.Flags().StringVar(&sc.TrustedProxies, "trusted-proxies", strings.Join(defaultTrustedProxies, ","), "peer networks (CIDRs) whose X-Forwarded-For is believed")
	serve.Flags().IntVar(&sc.ProxyHops, "proxy-hops", 1, "proxies that append to X-Forwarded-For: 1 for the load balancer, 2 with the edge in front; 0 ignores the header")
	f := serve.Flags()
	f.StringVar(&sc.SSO.Issuer, "oidc-issuer", os.Getenv("COURSES_OIDC_ISSUER"), "OpenID provider's issuer URL for \"Sign in with your university account\"; empty turns single sign-on off (env COURSES_OIDC_ISSUER)")
	f.StringVar(&sc.SSO.ClientID, "oidc-client-id", os.Getenv("COURSES_OIDC_CLIENT_ID"), "the app's client id at the provider (env COURSES_OIDC_CLIENT_ID)")
	f.StringVar(&sc.SSO.ClientSecretID, "oidc-client-secret-id", os.Getenv("COURSES_OIDC_CLIENT_SECRET_ID"), "Secrets Manager id or ARN of the client secret, read like the database credential (env COURSES_OIDC_CLIENT_SECRET_ID)")
	f.StringVar(&sc.SSO.PublicURL, "public-url", os.Getenv("COURSES_PUBLIC_URL"), "the site's address as browsers reach it, e.g. https://courses.example.edu; the redirect URI is it plus /login/sso/callback (env COURSES_PUBLIC_URL)")
	f.StringSliceVar(&sc.SSO.Scopes, "oidc-scopes", envList("COURSES_OIDC_SCOPES", DefaultSSOScopes), "scopes to request; Okta needs groups added (env COURSES_OIDC_SCOPES)")
	f.StringVar(&sc.SSO.GroupsClaim, "oidc-groups-claim", envOr("COURSES_OIDC_GROUPS_CLAIM", "groups"), "the ID token claim holding the user's groups (env COURSES_OIDC_GROUPS_CLAIM)")
	f.StringSliceVar(&sc.SSO.TeacherGroups, "oidc-teacher-groups", envList("COURSES_OIDC_TEACHER_GROUPS", DefaultTeacherGroups), "groups whose members are teachers (env COURSES_OIDC_TEACHER_GROUPS)")
	f.StringSliceVar(&sc.SSO.StudentGroups, "oidc-student-groups", envList("COURSES_OIDC_STUDENT_GROUPS", DefaultStudentGroups), "groups whose members are students (env COURSES_OIDC_STUDENT_GROUPS)")
	f.BoolVar(&sc.SSO.TrustEmail, "oidc-trust-email", envBool("COURSES_OIDC_TRUST_EMAIL"), "treat the email claim as verified without email_verified (Entra ID sends none) (env COURSES_OIDC_TRUST_EMAIL)")
	f.BoolVar(&sc.SSO.StaffSSOOnly, "sso-only-staff", envBool("COURSES_SSO_ONLY_STAFF"), "refuse teachers' password logins: staff sign in with the university account only (env COURSES_SSO_ONLY_STAFF)")
	f.Int64Var(&sc.MaxUpload, "max-upload", DefaultMaxUpload, "largest material a teacher may upload, in bytes (the bucket may refuse smaller: objstore.max_upload)")

	migrate := &cobra.Command{
		Use:   "migrate",
		Short: "Apply pending schema migrations and exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := newLogger(stderr)
			db, err := openFromEnv(cmd.Context(), "", 2, 8*time.Second, log)
			if err != nil {
				return err
			}
			defer db.Close()
			applied, err := Migrate(cmd.Context(), db, log.With("component", "migrate"))
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "applied %d migration(s); schema at version %d\n", len(applied), migrations[len(migrations)-1].version)
			return nil
		},
	}

	var asJSON bool
	list := &cobra.Command{
		Use:   "migrations",
		Short: "List the schema migrations this build carries, and which break older versions",
		Long: "List the schema migrations this build carries. A breaking one (marked \"" + breakingMarker + " why\" in its SQL) " +
			"would break an older version still serving during a rolling deploy. Needs no database.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ms := migrationList(migrations)
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(ms)
			}
			for _, m := range ms {
				kind := "expand"
				if m.Breaking {
					kind = "BREAKING: " + m.Reason
				}
				fmt.Fprintf(stdout, "%3d  %-24s %s\n", m.Version, m.Name, kind)
			}
			return nil
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON: [{version, name, breaking, reason}]")

	var seedCfg SeedConfig
	seed := &cobra.Command{
		Use:   "seed",
		Short: "Fill the database with deterministic demo data",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := seedCfg.Validate(); err != nil {
				return err
			}
			log := newLogger(stderr)
			db, err := openFromEnv(cmd.Context(), "", 4, 8*time.Second, log)
			if err != nil {
				return err
			}
			defer db.Close()
			if _, err := Migrate(cmd.Context(), db, log.With("component", "migrate")); err != nil {
				return err
			}
			return runSeed(cmd.Context(), db, seedCfg, stdout, stderr)
		},
	}
	addSeedFlags(seed, &seedCfg)

	ver := &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(stdout, "courses", version)
		},
	}
	root.AddCommand(serve, migrate, list, seed, ver, newReleaseCmd(stdout, stderr), newStaticCmd(stdout, stderr), newMaterialsCmd(stdout, stderr))
	return root.ExecuteContext(ctx)
}

// addSeedFlags binds the seed's flags (seed and release share them).
func addSeedFlags(cmd *cobra.Command, c *SeedConfig) {
	cmd.Flags().IntVar(&c.Students, "students", 60000, "number of students")
	cmd.Flags().IntVar(&c.Courses, "courses", 500, "number of courses")
	cmd.Flags().IntVar(&c.Teachers, "teachers", 0, "number of teachers (default: one per 10 courses, at least 1)")
	cmd.Flags().IntVar(&c.PerStudent, "courses-per-student", 5, "average enrolments per student")
	cmd.Flags().IntVar(&c.LargeCourse, "large-course", DefaultLargeCourse, "students in course 1 (student1..studentN, capped at --students), for a gradebook at size; -1 for none")
	cmd.Flags().StringVar(&c.Password, "password", "exam-week-2026", "demo password shared by all seeded users")
	cmd.Flags().BoolVar(&c.Force, "force", false, "delete all existing data and seed again")
}

// runSeed seeds and says what it did.
func runSeed(ctx context.Context, db *DB, cfg SeedConfig, stdout, stderr io.Writer) error {
	cfg.Progress = stderr
	res, err := Seed(ctx, db, cfg)
	if err != nil {
		return err
	}
	if res.Skipped {
		fmt.Fprintln(stdout, "database already seeded; nothing done (use --force to replace all data)")
		return nil
	}
	fmt.Fprintf(stdout, "seeded %d students, %d teachers, %d courses, %d enrolments, %d materials, %d grades in %s\n",
		res.Students, res.Teachers, res.Courses, res.Enrolments, res.Materials, res.Grades, res.Took.Round(time.Millisecond))
	fmt.Fprintf(stdout, "log in as student1@example.edu ... student%d@example.edu or teacher1@example.edu ... teacher%d@example.edu\n", res.Students, res.Teachers)
	if res.LargeCourse > 0 {
		fmt.Fprintf(stdout, "course 1 has %d students: log in as teacher1@example.edu and open /courses/1/gradebook\n", res.LargeCourse)
	}
	fmt.Fprintf(stdout, "demo password for every seeded user: %s\n", cfg.Password)
	return nil
}

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, nil)).With("app", "courses")
}

// defaultListen is HOST:PORT from the environment, or 127.0.0.1:8080.
func defaultListen() string {
	host, port := os.Getenv("HOST"), os.Getenv("PORT")
	if host == "" {
		host = "127.0.0.1"
	}
	if port == "" {
		port = "8080"
	}
	return net.JoinHostPort(host, port)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// envList splits a comma- or space-separated variable, or returns def.
func envList(name string, def []string) []string {
	v := strings.FieldsFunc(os.Getenv(name), func(r rune) bool { return r == ',' || r == ' ' })
	if len(v) == 0 {
		return def
	}
	return v
}

func envBool(name string) bool {
	v := strings.ToLower(os.Getenv(name))
	return v == "1" || v == "true" || v == "yes"
}

// serveConfig is the configuration of `courses serve`.
type serveConfig struct {
	// Listen is the TCP address. Default HOST:PORT from env, else 127.0.0.1:8080.
	Listen string
	// ConnString overrides the PG* env vars (tests). Default "": env.
	ConnString string
	// ShutdownTimeout bounds graceful shutdown. Default 25s.
	ShutdownTimeout time.Duration
	// StartupTimeout bounds how long migrations are retried at start. Default 60s.
	StartupTimeout time.Duration
	// MaxConns is the pool size. Default 8.
	MaxConns int32
	// RetryBudget is the per-operation failover retry budget. Default 8s.
	RetryBudget time.Duration
	// Throttle is the login rate limit. Defaults: see ThrottlePolicy.
	Throttle ThrottlePolicy
	// TrustedProxies is a comma-separated CIDR list of the peers whose
	// X-Forwarded-For is believed. Default: loopback and private ranges.
	TrustedProxies string
	// ProxyHops is how many of our proxies append to X-Forwarded-For.
	// Default 1 (the load balancer).
	ProxyHops int
	// SSO is single sign-on. Default off (no issuer).
	SSO SSOConfig
	// MaxUpload bounds a teacher's upload. Default 100MiB.
	MaxUpload int64

	clientIP ClientIPConfig
}

// Validate checks the configuration.
func (c *serveConfig) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("--listen: want host:port, got %q", c.Listen)
	}
	if c.ShutdownTimeout <= 0 {
		return fmt.Errorf("--shutdown-timeout: must be > 0, got %s", c.ShutdownTimeout)
	}
	if c.StartupTimeout <= 0 {
		return fmt.Errorf("--startup-timeout: must be > 0, got %s", c.StartupTimeout)
	}
	if c.MaxConns < 1 || c.MaxConns > 100 {
		return fmt.Errorf("--max-conns: must be 1-100, got %d", c.MaxConns)
	}
	if c.RetryBudget <= 0 {
		return fmt.Errorf("--retry-budget: must be > 0, got %s", c.RetryBudget)
	}
	c.Throttle.setDefaults()
	if err := c.Throttle.Validate(); err != nil {
		return err
	}
	if c.ProxyHops < 0 || c.ProxyHops > 5 {
		return fmt.Errorf("--proxy-hops: must be 0-5, got %d", c.ProxyHops)
	}
	trusted, err := ParseTrustedProxies(c.TrustedProxies)
	if err != nil {
		return err
	}
	c.clientIP = ClientIPConfig{TrustedProxies: trusted, Hops: c.ProxyHops}
	return c.SSO.Validate()
}

// openFromEnv opens the pool from conn (or the PG* env vars when empty) and,
// when COURSES_DB_SECRET_ID is set, takes credentials from Secrets Manager.
func openFromEnv(ctx context.Context, conn string, maxConns int32, budget time.Duration, log *slog.Logger) (*DB, error) {
	var creds CredentialProvider
	if id := os.Getenv("COURSES_DB_SECRET_ID"); id != "" {
		p, err := NewSecretsManagerProvider(ctx, id, log)
		if err != nil {
			return nil, err
		}
		creds = p
	}
	return OpenDB(ctx, DBConfig{ConnString: conn, MaxConns: maxConns, RetryBudget: budget, Credentials: creds, Logger: log})
}

// runServe runs migrations, serves until ctx is cancelled (SIGTERM/SIGINT),
// then drains. ready, if set, is called with the bound address.
func runServe(ctx context.Context, cfg serveConfig, log *slog.Logger, ready func(addr string)) error {
	// Each subsystem names its own component once; the serve command's
	// own lines are component "serve".
	base, log := log, log.With("component", "serve")
	fault, err := buildFault()
	if err != nil {
		return err
	}
	if fault == "crash" {
		return fmt.Errorf("%s=crash: this build exits at start (a bad release, for haven drill bad-deploy)", faultEnv)
	}
	// Resources must outlive the signal context during shutdown.
	bg := context.WithoutCancel(ctx)
	db, err := openFromEnv(bg, cfg.ConnString, cfg.MaxConns, cfg.RetryBudget, base)
	if err != nil {
		return err
	}
	defer db.Close()

	if err := migrateAtStartup(ctx, db, cfg.StartupTimeout, base.With("component", "migrate")); err != nil {
		return err
	}

	var sso *ssoClient
	if cfg.SSO.Enabled() {
		secret, err := NewClientSecretProvider(bg, cfg.SSO.ClientSecretID, base)
		if err != nil {
			return err
		}
		sso = newSSOClient(cfg.SSO, secret, systemClock{}, base)
		log.Info("single sign-on on", "issuer", cfg.SSO.Issuer, "client_id", cfg.SSO.ClientID,
			"redirect_uri", cfg.SSO.RedirectURL(), "staff_sso_only", cfg.SSO.StaffSSOOnly)
	}
	mc, err := materialsConfigFromEnv()
	if err != nil {
		return err
	}
	mc.MaxUpload = cfg.MaxUpload
	materials, err := NewMaterials(bg, mc, base)
	if err != nil {
		return err
	}
	if materials != nil {
		log.Info("materials in S3", "bucket", mc.Bucket, "prefix", materials.cfg.Prefix, "signed_urls", materials.signer != nil, "key_pair_id", mc.KeyPairID)
	}
	srv, err := NewServer(ServerConfig{DB: db, Logger: base, Throttle: cfg.Throttle, ClientIP: &cfg.clientIP, SSO: sso, Materials: materials})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	hs := &http.Server{
		Handler:           withFault(fault, srv.Handler()),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		// Longer than the load balancer's 60 s idle timeout, so the LB
		// closes idle connections first and never reuses a closed one.
		IdleTimeout: 75 * time.Second,
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext: func(net.Listener) context.Context { return bg },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.Info("serving", "addr", ln.Addr().String(), "version", version)
	if ready != nil {
		ready(ln.Addr().String())
	}

	select {
	case err := <-errc:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests", "timeout", cfg.ShutdownTimeout.String())
	srv.SetDraining()
	sctx, cancel := context.WithTimeout(bg, cfg.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		_ = hs.Close()
		return fmt.Errorf("shut down http: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve http: %w", err)
	}
	log.Info("stopped")
	return nil
}

// migrateAtStartup retries migrations until they succeed or the startup
// timeout passes, so an instance that boots during a failover waits instead
// of crash-looping.
func migrateAtStartup(ctx context.Context, db *DB, timeout time.Duration, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		_, err := Migrate(ctx, db, log)
		if err == nil {
			return nil
		}
		if classify(err) == classOther && !errors.Is(err, ErrDBUnavailable) {
			return err
		}
		log.Warn("migrations failed, retrying", "attempt", attempt+1, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("migrate at startup: gave up after %s: %w", timeout, err)
		case <-time.After(backoff(attempt, 0)):
		}
	}
}
