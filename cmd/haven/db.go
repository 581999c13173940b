package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/drill"
)

func newDBCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "db", Short: "Operate the Multi-AZ database: status, planned failover, backups, point-in-time restore"}
	cmd.AddCommand(newDBStatusCmd(g), newDBFailoverCmd(g), newDBBackupCmd(g), newDBBackupsCmd(g),
		newDBRestoreCmd(g), newDBRestoresCmd(g), newDBRestoreStopCmd(g))
	return cmd
}

func newDBStatusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show roles, zones, epoch, replication lag, sync state and durability mode",
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := g.client().DBStatus(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			printDBStatus(cmd.OutOrStdout(), st)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	return cmd
}

func printDBStatus(w io.Writer, st api.DBStatus) {
	fmt.Fprintf(w, "endpoint %s → %s (zone %s), epoch %d (endpoint epoch %d), durability %s\n",
		st.Endpoint, st.Primary, st.PrimaryZone, st.Epoch, st.EndpointEpoch, st.Durability)
	fmt.Fprintf(w, "app role %s, database %s, auth %s\n", st.AppUser, st.AppDatabase, st.AppAuth)
	if st.Standby != "" {
		fmt.Fprintf(w, "standby %s (zone %s): replication %s, sync %s, eligible %v, lag %d bytes / %.3f s\n",
			st.Standby, st.StandbyZone, st.ReplicationState, st.SyncState, st.StandbyEligible, st.LagBytes, st.LagSeconds)
	} else {
		fmt.Fprintln(w, "no standby (database.multi_az: false)")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  NODE\tZONE\tADDRESS\tROLE\tHEALTH\tPID")
	for _, n := range st.Nodes {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%d\n", n.Name, n.Zone, n.Address, n.Role, n.Health, n.PID)
	}
	tw.Flush()
	if st.LastPlan != "" {
		fmt.Fprintf(w, "last plan: %s\n", st.LastPlan)
	}
	if st.LastError != "" {
		fmt.Fprintf(w, "last error: %s\n", st.LastError)
	}
	if b := st.Backups; b != nil {
		if b.Enabled {
			fmt.Fprintf(w, "backups: pgBackRest stanza %s in %s; last archived WAL %s", b.Stanza, b.Repo, b.LastArchived)
			if b.ArchiveFailing {
				fmt.Fprint(w, " (ARCHIVING FAILING)")
			}
			fmt.Fprintln(w)
		} else {
			fmt.Fprintf(w, "backups: off (%s)\n", b.Reason)
		}
	}
	for _, r := range st.Restores {
		fmt.Fprintf(w, "restored server %s: %s at %s (pid %d)\n", r.ID, r.Target.Format(time.RFC3339Nano), r.Address, r.PID)
	}
}

func newDBFailoverCmd(g *globals) *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "failover",
		Short: "Planned switchover: wait for the standby to catch up, drain writes, promote it (zero acknowledged writes lost)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			c := g.client()
			st, err := c.DBStatus(cmd.Context())
			if err != nil {
				return err
			}
			target := to
			if target == "" {
				target = st.StandbyZone
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "switching over from %s (zone %s) to the standby in zone %s: waiting for it to catch up, then draining the endpoint...\n",
				st.Primary, st.PrimaryZone, target)
			res, err := c.DBSwitchover(cmd.Context(), api.DBSwitchoverRequest{ToZone: to})
			if err != nil {
				return fmt.Errorf("switchover failed: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "primary is now %s (zone %s), epoch %d; switchover took %.0f ms; %s rejoins as the standby\n",
				res.ToNode, res.ToZone, res.Epoch, res.TookMS, res.FromNode)
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "zone of the standby to promote (default: the standby's zone)")
	return cmd
}

func newDBBackupCmd(g *globals) *cobra.Command {
	var typ string
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Take a backup now with pgBackRest",
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch typ {
			case "full", "incr", "diff":
			default:
				return fmt.Errorf("--type %q: must be full, incr or diff", typ)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "taking a %s backup from the primary (this takes a few seconds)...\n", typ)
			start := time.Now()
			b, err := g.client().DBBackup(cmd.Context(), api.DBBackupRequest{Type: typ})
			if err != nil {
				return fmt.Errorf("backup failed: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "backup %s (%s) done in %.1f s: %s, %s in the repository\n",
				b.Label, b.Type, time.Since(start).Seconds(), humanBytes(b.SizeBytes), humanBytes(b.RepoBytes))
			return nil
		},
	}
	cmd.Flags().StringVar(&typ, "type", "full", "full, incr or diff")
	return cmd
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func newDBBackupsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "backups",
		Short: "List backups and the restorable window (earliest and latest restorable time)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := g.client().DBBackups(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), l)
			}
			w := cmd.OutOrStdout()
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "LABEL\tTYPE\tSTART\tSTOP\tSIZE\tREPO")
			for _, b := range l.Backups {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", b.Label, b.Type, b.Start.UTC().Format(time.RFC3339), b.Stop.UTC().Format(time.RFC3339), humanBytes(b.SizeBytes), humanBytes(b.RepoBytes))
			}
			tw.Flush()
			if len(l.Backups) == 0 {
				fmt.Fprintln(w, "no backups yet: the first full backup runs when the region starts; `haven db backup` takes one now")
				return nil
			}
			if l.WALChainProblem != "" {
				fmt.Fprintf(w, "no restorable window: %s\n", l.WALChainProblem)
				return nil
			}
			if l.WALChainEnd != "" && l.WALChainEnd != l.WALMax {
				fmt.Fprintf(w, "the archived WAL is continuous only up to %s (newest archived segment %s): the latest restorable time stops there until the missing segment arrives (right after failovers, a short-lived timeline's last segment can arrive seconds late; if it does not, check the archiver with `haven db status`)\n",
					l.WALChainEnd, l.WALMax)
			}
			if l.LatestRestorable.IsZero() {
				fmt.Fprintf(w, "restorable from %s; no commit archived after it yet (the archive ticker switches WAL every few seconds once there are writes)\n",
					l.EarliestRestorable.UTC().Format(time.RFC3339Nano))
				return nil
			}
			fmt.Fprintf(w, "restorable from %s to %s (latest is %.1f s ago)\n", l.EarliestRestorable.UTC().Format(time.RFC3339Nano),
				l.LatestRestorable.UTC().Format(time.RFC3339Nano), l.LatestRestorableLagSeconds)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the list as JSON")
	return cmd
}

// parseTime reads an absolute time (RFC 3339, or "2006-01-02 15:04:05[.frac]"
// in UTC) or a negative duration relative to now ("-5m").
func parseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "-") {
		d, err := time.ParseDuration(s)
		if err == nil {
			return now.Add(d), nil
		}
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--to-time %q: want RFC 3339 (2026-05-01T10:00:00Z), \"2026-05-01 10:00:00\" (UTC) or a negative duration like -2m", s)
}

func newDBRestoreCmd(g *globals) *cobra.Command {
	var toTime string
	var port int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "restore --to-time T",
		Short: "Restore the backups to a point in time into a NEW server (the live database is untouched)",
		Long: `Restore the backups to a point in time into a new PostgreSQL server.

The live database is not touched. The restored server listens on 127.0.0.1
(a free port unless --port), keeps running until ` + "`haven db restore-stop ID`" + ` or
` + "`haven down`" + `, and its data stays in the state dir's restores/ directory.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if toTime == "" {
				return fmt.Errorf("--to-time is required; `haven db backups` shows the restorable window")
			}
			t, err := parseTime(toTime, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "restoring to %s into a new server (restore from the repository, then WAL replay; this takes a while)...\n", t.UTC().Format(time.RFC3339Nano))
			r, err := g.client().DBRestore(cmd.Context(), api.DBRestoreRequest{ToTime: t, Port: port})
			if err != nil {
				return fmt.Errorf("restore failed: %w", err)
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), r)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored %s to %s from backup %s in %.1f s; last replayed commit %s\n",
				r.ID, r.Target.UTC().Format(time.RFC3339Nano), r.Backup, r.TookMS/1000, r.LastReplayed.UTC().Format(time.RFC3339Nano))
			fmt.Fprintf(cmd.OutOrStdout(), "server at %s: psql \"%s\"\nstop it with: haven db restore-stop %s\n", r.Address, r.DSN, r.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&toTime, "to-time", "", "point in time: RFC 3339, \"YYYY-MM-DD hh:mm:ss\" (UTC) or -DURATION")
	cmd.Flags().IntVar(&port, "port", 0, "port for the restored server on 127.0.0.1 (default: a free one)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the restored server as JSON")
	return cmd
}

func newDBRestoresCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "restores",
		Short: "List restored servers still running",
		RunE: func(cmd *cobra.Command, _ []string) error {
			rs, err := g.client().DBRestores(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), rs)
			}
			for _, r := range rs {
				fmt.Fprintf(cmd.OutOrStdout(), "%s  %s  %s  pid %d  %s\n", r.ID, r.Target.UTC().Format(time.RFC3339Nano), r.Address, r.PID, r.DataDir)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}

func newDBRestoreStopCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "restore-stop ID",
		Short: "Stop a restored server (its data directory is kept)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.client().DBRestoreStop(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored server %s stopped\n", args[0])
			return nil
		},
	}
}

func newDBFailoverDrillCmd(g *globals) *cobra.Command {
	var cfg drill.DBFailoverConfig
	var wf workloadFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "db-failover",
		Short: "Fail the database primary (or standby) round after round under ledger writers; report RTO and prove zero acknowledged writes lost",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Progress = cmd.ErrOrStderr()
			if cfg.WithWebLoad {
				var err error
				if cfg.Workload, err = wf.build(); err != nil {
					return err
				}
			}
			rep, err := drill.DBFailover(cmd.Context(), g.client(), cfg)
			if err != nil {
				return err
			}
			res := drillResult{name: "db-failover", pass: rep.Pass, reasons: rep.Reasons, why: strings.Join(rep.Reasons, "; "), save: g.client(),
				header: fmt.Sprintf("db-failover drill (%s, %s mode, %d rounds, %d writers)", rep.Fault, rep.Durability, rep.Rounds, rep.Writers)}
			return finishDrill(cmd.OutOrStdout(), asJSON, rep, res, func(w io.Writer) { printDBFailover(w, rep) })
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Rounds, "rounds", 3, "number of faults")
	f.StringVar(&cfg.Fault, "fault", "kill", "kill, freeze, standby-loss or controller-restart")
	f.IntVar(&cfg.Writers, "writers", 4, "concurrent ledger writers")
	f.DurationVar(&cfg.RTOMedianTarget, "rto-median-target", 3*time.Second, "the drill fails when the median RTO is above this")
	f.DurationVar(&cfg.RTOMaxTarget, "rto-max-target", 5*time.Second, "the drill fails when the largest RTO is above this")
	f.DurationVar(&cfg.HealTimeout, "heal-timeout", 120*time.Second, "how long to wait for the pair to heal after each fault")
	f.BoolVar(&cfg.WithWebLoad, "with-web-load", false, "also drive logged-in journeys through the load balancer and report when they failed")
	f.IntVar(&cfg.Rate, "rate", 20, "web requests per second (--with-web-load)")
	f.IntVar(&cfg.Users, "users", 10, "seeded students to log in (--with-web-load)")
	wf.add(f)
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func printDBFailover(w io.Writer, r *drill.DBFailoverReport) {
	label := "RTO"
	if r.Fault == api.DBFaultStandbyLoss {
		label = "commit stall"
	}
	fmt.Fprintf(w, "  %s median %.0f ms, max %.0f ms, min %.0f ms; slowest heal %.1f s\n", label, r.RTOMS.Median, r.RTOMS.Max, r.RTOMS.Min, r.HealMS/1000)
	fmt.Fprintf(w, "  ledger: ok %d, fail %d, unknown %d; acknowledged lost %d, failed present %d\n", r.OK, r.Fail, r.Unknown, r.AcknowledgedLost, r.FailPresent)
	fmt.Fprintf(w, "  final: %d writable primary (%s, epoch %d), synchronous standby streaming: %v\n", r.Primaries, r.FinalPrimary, r.FinalEpoch, r.SyncStandbyStreaming)
	if r.Web != nil {
		fmt.Fprintf(w, "  web: %d requests, %d failed, %d failures outside the RTO window\n", r.Web.Requests, r.Web.Failed, r.WebOutsideWindow)
	}
}

func newPITRDrillCmd(g *globals) *cobra.Command {
	var cfg drill.PITRConfig
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "pitr",
		Short: "Write timestamped rows, restore to a time T in the past into a new server, check it holds exactly the rows committed by T",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Progress = cmd.ErrOrStderr()
			rep, err := drill.PITR(cmd.Context(), g.client(), cfg)
			if err != nil {
				return err
			}
			res := drillResult{name: "pitr", header: "pitr drill", pass: rep.Pass, reasons: rep.Reasons, why: strings.Join(rep.Reasons, "; "), save: g.client()}
			return finishDrill(cmd.OutOrStdout(), asJSON, rep, res, func(w io.Writer) {
				fmt.Fprintf(w, "  T = %s, restored from %s in %.1f s (%s)\n", rep.Target.UTC().Format(time.RFC3339Nano), rep.Backup, rep.RestoreS, rep.RestoreID)
				fmt.Fprintf(w, "  committed %d: %d before T (missing %d), %d after T (present %d), %d in flight at T, %d unknown; restored %d rows\n",
					rep.Committed, rep.MustHave, len(rep.Missing), rep.MustNotHave, len(rep.Extra), rep.InFlight, rep.Unknown, rep.Restored)
				fmt.Fprintf(w, "  latest restorable time lag under writes: median %.1f s, max %.1f s (%d samples)\n", rep.LagMedianS, rep.LagMaxS, rep.LagSamples)
			})
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Writers, "writers", 4, "concurrent writers")
	f.DurationVar(&cfg.WriteFor, "write-for", 20*time.Second, "how long to write; T is half way")
	f.DurationVar(&cfg.LagTarget, "lag-target", 10*time.Second, "the drill fails when the latest restorable time trails by more")
	f.BoolVar(&cfg.Keep, "keep", false, "leave the restored server running")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}
