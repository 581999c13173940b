package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/spf13/cobra"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/drill"
	"github.com/haven-platform/haven/internal/leakscan"
	"github.com/haven-platform/haven/internal/termsafe"
)

func newSecretsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "secrets", Short: "The region's Secrets Manager: list, rotate, read the audit trail"}
	var listJSON, auditJSON, failedOnly bool
	var since time.Duration
	var action string
	list := &cobra.Command{
		Use:   "list",
		Short: "List secrets with their versions and staging labels (never their values)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			sm, info, err := drill.OperatorSecrets(ctx, g.client(), 15*time.Minute)
			if err != nil {
				return err
			}
			var all []smtypes.SecretListEntry
			p := secretsmanager.NewListSecretsPaginator(sm, &secretsmanager.ListSecretsInput{})
			for p.HasMorePages() {
				page, err := p.NextPage(ctx)
				if err != nil {
					return fmt.Errorf("list secrets: %w", err)
				}
				all = append(all, page.SecretList...)
			}
			if listJSON {
				out := []map[string]any{}
				for _, s := range all {
					out = append(out, map[string]any{
						"name": aws.ToString(s.Name), "arn": aws.ToString(s.ARN), "versions": s.SecretVersionsToStages,
						"last_rotated": s.LastRotatedDate, "last_changed": s.LastChangedDate, "created": s.CreatedDate,
						"rotation_s": rotationFor(info, aws.ToString(s.Name)),
					})
				}
				return writeJSON(cmd.OutOrStdout(), out)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSIONS\tLAST ROTATED\tROTATION\tARN")
			for _, s := range all {
				last := "never"
				if s.LastRotatedDate != nil {
					last = s.LastRotatedDate.UTC().Format(time.RFC3339)
				}
				rot := "off"
				if d := rotationFor(info, aws.ToString(s.Name)); d > 0 {
					rot = "every " + (time.Duration(d) * time.Second).String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", aws.ToString(s.Name), stagesSummary(s.SecretVersionsToStages), last, rot, aws.ToString(s.ARN))
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print as JSON")

	rotate := &cobra.Command{
		Use:   "rotate NAME",
		Short: "Rotate a secret now (createSecret, setSecret, testSecret, finishSecret); AWSCURRENT keeps working throughout",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			sm, _, err := drill.OperatorSecrets(ctx, g.client(), 15*time.Minute)
			if err != nil {
				return err
			}
			start := time.Now()
			out, err := sm.RotateSecret(ctx, &secretsmanager.RotateSecretInput{SecretId: aws.String(args[0])})
			if err != nil {
				return fmt.Errorf("rotate %s: %w; AWSCURRENT is unchanged, run the command again to retry", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rotated %s: AWSCURRENT is now version %s (%.1fs)\n", aws.ToString(out.Name), aws.ToString(out.VersionId), time.Since(start).Seconds())
			return nil
		},
	}

	audit := &cobra.Command{
		Use:   "audit",
		Short: "Read the audit trail: every Secrets Manager call with principal, action, secret, version and result",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := api.AuditQuery{Action: action, Failed: failedOnly}
			if since > 0 {
				q.Since = time.Now().Add(-since)
			}
			recs, err := g.client().SecretsAudit(cmd.Context(), q)
			if err != nil {
				return fmt.Errorf("read audit trail: %w", err)
			}
			if auditJSON {
				return writeJSON(cmd.OutOrStdout(), recs)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tPRINCIPAL\tACTION\tSECRET\tVERSION\tRESULT\tSOURCE")
			for _, r := range recs {
				// Every field but the time comes from a caller of the API:
				// one record a line, no control character raw.
				q := termsafe.String
				result := q(r.Result)
				if r.Count > 1 { // unauthenticated failures aggregated over a window
					result = fmt.Sprintf("%s ×%d until %s", result, r.Count, r.Until.UTC().Format(time.RFC3339))
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Time.UTC().Format(time.RFC3339), q(r.Principal), q(r.Action), q(r.SecretARN), q(r.VersionID), result, q(r.SourceIP))
			}
			return tw.Flush()
		},
	}
	audit.Flags().BoolVar(&auditJSON, "json", false, "print as JSON lines array")
	audit.Flags().DurationVar(&since, "since", 0, "only calls newer than this (e.g. 1h)")
	audit.Flags().StringVar(&action, "action", "", "only this action, e.g. GetSecretValue")
	audit.Flags().BoolVar(&failedOnly, "failed", false, "only refused or failed calls")
	put := &cobra.Command{
		Use:   "put NAME",
		Short: "Store a secret read from standard input (never from an argument): a new secret, or a new AWSCURRENT version of an existing one",
		Long: `Store a secret read from standard input, never from an argument (arguments show in ps and
shell history). Alarm actions name their credentials this way, e.g.
  printf '{"username":"haven","password":"…"}' | haven secrets put ops/servicenow`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 65537))
			if err != nil {
				return fmt.Errorf("read the secret from standard input: %w", err)
			}
			value := strings.TrimRight(string(b), "\r\n")
			if value == "" || len(b) > 65536 {
				return errors.New("secrets put: give the value on standard input (1 to 65536 bytes), e.g. printf '{\"token\":\"…\"}' | haven secrets put NAME")
			}
			sm, _, err := drill.OperatorSecrets(ctx, g.client(), 15*time.Minute)
			if err != nil {
				return err
			}
			out, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(args[0]), SecretString: aws.String(value)})
			var exists *smtypes.ResourceExistsException
			switch {
			case errors.As(err, &exists):
				pv, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(args[0]), SecretString: aws.String(value)})
				if err != nil {
					return fmt.Errorf("put %s: %w", args[0], err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: new AWSCURRENT version %s\n", args[0], aws.ToString(pv.VersionId))
			case err != nil:
				return fmt.Errorf("create %s: %w", args[0], err)
			default:
				fmt.Fprintf(cmd.OutOrStdout(), "%s: created (%s)\n", args[0], aws.ToString(out.ARN))
			}
			return nil
		},
	}
	cmd.AddCommand(list, rotate, audit, put)
	return cmd
}

func rotationFor(info api.SecretsInfo, name string) float64 {
	if name == info.DBSecret {
		return info.RotationS
	}
	return 0
}

func stagesSummary(m map[string][]string) string {
	var parts []string
	for id, st := range m {
		if len(st) > 0 {
			parts = append(parts, strings.Join(st, "+")+"="+id[:min(8, len(id))])
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

// SecretsScan is the result of `haven audit secrets`.
type SecretsScan struct {
	Findings []leakscan.Finding `json:"findings"`
	// Scanned says what was looked at.
	Scanned struct {
		LiveSecrets int      `json:"live_secrets"`
		Repo        string   `json:"repo,omitempty"`
		Spec        string   `json:"spec,omitempty"`
		StateDir    string   `json:"state_dir"`
		Processes   []string `json:"processes"`
	} `json:"scanned"`
	Skipped []string `json:"skipped"`
}

func newAuditSecretsCmd(g *globals) *cobra.Command {
	var asJSON bool
	var repo string
	cmd := &cobra.Command{
		Use:   "secrets",
		Short: "Scan the repo, the spec, the state dir, every instance's environment and command line, and the logs for live passwords and credential patterns",
		Long: `Scan for plaintext credentials. The live database passwords (every retained
version: current, previous, older) are fetched from the daemon into memory and
searched for verbatim; credential patterns (AWS keys, private keys, password
assignments with literal values, postgres URLs with passwords) are searched like
gitleaks does. Findings name where; the value is masked. Exits 4 on a finding.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := scanSecrets(cmd.Context(), g, repo, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if asJSON {
				if err := writeJSON(cmd.OutOrStdout(), res); err != nil {
					return err
				}
			} else {
				w := cmd.OutOrStdout()
				for _, f := range res.Findings {
					fmt.Fprintln(w, f.String())
				}
				fmt.Fprintf(w, "scanned: %d live secret values; repo %s; spec %s; state dir %s; %d processes\n",
					res.Scanned.LiveSecrets, orNone(res.Scanned.Repo), orNone(res.Scanned.Spec), res.Scanned.StateDir, len(res.Scanned.Processes))
				for _, s := range res.Skipped {
					fmt.Fprintln(cmd.ErrOrStderr(), "not scanned: "+s)
				}
			}
			if n := len(res.Findings); n > 0 {
				return errorf(4, "audit secrets: %d plaintext credential(s) found", n)
			}
			if !asJSON {
				fmt.Fprintln(cmd.OutOrStdout(), "no plaintext credentials found")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print findings as JSON")
	cmd.Flags().StringVar(&repo, "repo", "", "git repository to scan (default: the one holding the spec, else the current directory's)")
	addSpecFlag(cmd, g)
	return cmd
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func scanSecrets(ctx context.Context, g *globals, repo string, diag io.Writer) (*SecretsScan, error) {
	c := g.client()
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	sm, info, err := drill.OperatorSecrets(ctx, c, 15*time.Minute)
	if err != nil {
		return nil, err
	}
	lits, err := liveSecretValues(ctx, sm)
	if err != nil {
		return nil, err
	}
	res := &SecretsScan{Findings: []leakscan.Finding{}, Skipped: []string{}}
	res.Scanned.LiveSecrets = len(lits)
	res.Scanned.Processes = []string{}
	s := &leakscan.Scanner{Literals: lits}
	add := func(f []leakscan.Finding, err error) error {
		res.Findings = append(res.Findings, f...)
		return err
	}

	// The spec: the -f flag if it exists, else the one the region was started from.
	specFile := g.specFile
	if _, err := os.Stat(specFile); err != nil {
		specFile = info.SpecFile
	}
	if specFile != "" {
		if abs, err := filepath.Abs(specFile); err == nil {
			specFile = abs
		}
		if _, err := os.Stat(specFile); err == nil {
			res.Scanned.Spec = specFile
			if err := add(s.ScanFile(specFile)); err != nil {
				return nil, err
			}
		}
	}

	// The repository.
	if repo == "" {
		for _, d := range []string{filepath.Dir(specFile), "."} {
			if d == "" {
				continue
			}
			if out, err := exec.CommandContext(ctx, "git", "-C", d, "rev-parse", "--show-toplevel").Output(); err == nil {
				repo = strings.TrimSpace(string(out))
				break
			}
		}
	}
	if repo != "" {
		res.Scanned.Repo = repo
		if err := add(s.ScanGit(ctx, repo)); err != nil {
			return nil, err
		}
	} else {
		res.Skipped = append(res.Skipped, "repository: neither the spec's directory nor the current one is in a git repository (use --repo)")
	}

	// The state dir (logs included), except the files the daemon names as
	// key material kept at rest by design, 0600 (the sealed store, its root
	// key, the region CA's private key).
	res.Scanned.StateDir = g.dir()
	if err := add(s.ScanTree(ctx, g.dir(), func(rel string) (bool, string) {
		for pattern, what := range info.AtRest { // the daemon says which files hold keys by design
			if ok, _ := filepath.Match(pattern, rel); ok {
				return true, what
			}
		}
		return false, ""
	})); err != nil {
		return nil, err
	}

	// Every instance's processes, the daemon and the database servers.
	type proc struct {
		pid   int
		label string
	}
	procs := []proc{{st.PID, "haven daemon"}}
	for _, in := range st.Instances {
		if in.PID == 0 {
			continue
		}
		for _, pid := range leakscan.ProcessGroup(in.PID) {
			procs = append(procs, proc{pid, in.ID})
		}
	}
	if st.Database != nil {
		for _, n := range st.Database.Nodes {
			if n.PID != 0 {
				procs = append(procs, proc{n.PID, "postgres " + n.Name})
			}
		}
	}
	for _, p := range procs {
		res.Scanned.Processes = append(res.Scanned.Processes, fmt.Sprintf("%d (%s)", p.pid, p.label))
		if err := add(s.ScanProcess(p.pid, p.label)); err != nil {
			fmt.Fprintf(diag, "warning: %v\n", err)
		}
	}
	res.Skipped = append(res.Skipped, s.Skipped...)
	return res, nil
}

// liveSecretValues fetches every retained version of every secret and
// returns the passwords (or whole values) to search for verbatim.
func liveSecretValues(ctx context.Context, sm *secretsmanager.Client) ([]leakscan.Literal, error) {
	var lits []leakscan.Literal
	p := secretsmanager.NewListSecretsPaginator(sm, &secretsmanager.ListSecretsInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list secrets: %w", err)
		}
		for _, s := range page.SecretList {
			vs, err := sm.ListSecretVersionIds(ctx, &secretsmanager.ListSecretVersionIdsInput{SecretId: s.ARN, IncludeDeprecated: aws.Bool(true)})
			if err != nil {
				return nil, fmt.Errorf("list versions of %s: %w", aws.ToString(s.Name), err)
			}
			for _, v := range vs.Versions {
				out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: s.ARN, VersionId: v.VersionId})
				if err != nil {
					var nf *smtypes.ResourceNotFoundException
					if errors.As(err, &nf) {
						continue
					}
					return nil, fmt.Errorf("read %s version %s: %w", aws.ToString(s.Name), aws.ToString(v.VersionId), err)
				}
				label := "deprecated"
				if len(v.VersionStages) > 0 {
					label = strings.Join(v.VersionStages, "+")
				}
				name := fmt.Sprintf("%s %s (version %s)", aws.ToString(s.Name), label, aws.ToString(v.VersionId)[:8])
				val := aws.ToString(out.SecretString)
				var obj map[string]any
				if json.Unmarshal([]byte(val), &obj) == nil {
					for k, x := range obj {
						if str, ok := x.(string); ok && isSecretField(k) {
							lits = append(lits, leakscan.Literal{Name: name + " " + k, Value: str})
						}
					}
				} else if val != "" {
					lits = append(lits, leakscan.Literal{Name: name, Value: val})
				}
			}
		}
	}
	return lits, nil
}

func isSecretField(k string) bool {
	k = strings.ToLower(k)
	return strings.Contains(k, "password") || strings.Contains(k, "secret") || strings.Contains(k, "token") || strings.Contains(k, "key")
}

func newSecretRotationCmd(g *globals) *cobra.Command {
	var cfg drill.RotationConfig
	var wf workloadFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "secret-rotation",
		Short: "Rotate the database secret N times under logged-in load; report failed requests, stale credentials and the audit trail",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Progress = cmd.ErrOrStderr()
			var err error
			if cfg.Workload, err = wf.build(); err != nil {
				return err
			}
			rep, err := drill.SecretRotation(cmd.Context(), g.client(), cfg)
			if err != nil {
				return err
			}
			res := drillResult{name: "secret-rotation", header: "secret-rotation drill", pass: rep.Pass, reasons: rep.Reasons, why: fmt.Sprint(rep.Reasons), save: g.client()}
			return finishDrill(cmd.OutOrStdout(), asJSON, rep, res, func(w io.Writer) {
				fmt.Fprintf(w, "  requests %d, failed %d, p50 %.1f ms, p99 %.1f ms over %.0f s at %d/s\n", rep.Requests, rep.Failed, rep.P50MS, rep.P99MS, rep.DurationS, rep.Rate)
				fmt.Fprintf(w, "  rotations %d/%d completed; stale credentials refused: %v\n", rep.Completed, rep.Requested, rep.StaleRefused)
				for _, s := range rep.Steps {
					fmt.Fprintf(w, "  #%d %s user %s %.0f ms new-logs-in %v previous-logs-in %v %s\n", s.N, s.VersionID, s.Username, s.MS, s.NewLogsIn, s.PreviousLogsIn, s.Error)
				}
				fmt.Fprintf(w, "  audit: %d app fetches logged, %d GetSecretValue audited (ok %v)\n", rep.AppFetches, rep.AuditedGets, rep.AuditOK)
			})
		},
	}
	cmd.Flags().IntVar(&cfg.Rotations, "rotations", 3, "how many rotations")
	cmd.Flags().DurationVar(&cfg.Interval, "interval", 3*time.Second, "load time before, between and after rotations")
	cmd.Flags().IntVar(&cfg.Rate, "rate", 30, "requests per second")
	cmd.Flags().IntVar(&cfg.Users, "users", 10, "seeded students to log in")
	wf.add(cmd.Flags())
	cmd.Flags().StringVar(&cfg.Secret, "secret", "", "secret to rotate (default: the database secret)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}
