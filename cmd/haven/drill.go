package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/drill"
	"github.com/haven-platform/haven/internal/report"
)

func newDrillCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "drill", Short: "Prove a promise under load: lose an instance, fail the database over, ..."}
	cmd.AddCommand(newInstanceLossCmd(g), newDBFailoverDrillCmd(g), newPITRDrillCmd(g), newSecretRotationCmd(g), newZoneLossCmd(g), newBadDeployCmd(g), newExamSpikeCmd(g), newDrillReportsCmd(g))
	return cmd
}

func newInstanceLossCmd(g *globals) *cobra.Command {
	var cfg drill.InstanceLossConfig
	var wf workloadFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "instance-loss",
		Short: "Kill one instance and freeze another under logged-in load; report failed requests and recovery times",
		RunE: func(cmd *cobra.Command, _ []string) error {
			var progress io.Writer = cmd.ErrOrStderr()
			cfg.Progress = progress
			var err error
			if cfg.Workload, err = wf.build(); err != nil {
				return err
			}
			rep, err := drill.InstanceLoss(cmd.Context(), g.client(), cfg)
			if err != nil {
				return err
			}
			res := drillResult{name: "instance-loss", header: "instance-loss drill", pass: rep.Pass, reasons: rep.Reasons, why: fmt.Sprint(rep.Reasons), save: g.client()}
			return finishDrill(cmd.OutOrStdout(), asJSON, rep, res, func(w io.Writer) { printInstanceLoss(w, cmd.ErrOrStderr(), rep) })
		},
	}
	cmd.Flags().DurationVar(&cfg.Duration, "duration", 60*time.Second, "how long to drive load")
	cmd.Flags().IntVar(&cfg.Rate, "rate", 50, "requests per second")
	cmd.Flags().IntVar(&cfg.Users, "users", 20, "seeded students to log in")
	wf.add(cmd.Flags())
	cmd.Flags().DurationVar(&cfg.RecoveryTimeout, "recovery-timeout", 90*time.Second, "how long to wait for a replacement")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

// drillResult is what finishDrill needs of a drill's report.
type drillResult struct {
	name    string   // instance-loss, db-failover, ...
	header  string   // the text report's first line, before the verdict
	pass    bool     // the report's verdict
	reasons []string // why it failed
	why     string   // the reasons as the exit message gives them
	// save, if set, keeps the report in the region's state dir (haven
	// drill reports lists them); a failure to save is said, not fatal.
	save *api.Client
}

// finishDrill prints a drill's report, as JSON or as text (the header with
// the verdict, the drill's own lines from body, then the reasons), and
// fails with exit code 2 when the drill did not pass.
func finishDrill(w io.Writer, asJSON bool, rep any, res drillResult, body func(io.Writer)) error {
	if res.save != nil {
		saveReport(res.save, rep)
	}
	if asJSON {
		if err := writeJSON(w, rep); err != nil {
			return err
		}
	} else {
		verdict := "PASS"
		if !res.pass {
			verdict = "FAIL"
		}
		fmt.Fprintf(w, "%s: %s\n", res.header, verdict)
		body(w)
		for _, r := range res.reasons {
			fmt.Fprintf(w, "  reason: %s\n", r)
		}
	}
	if !res.pass {
		return errorf(2, "drill %s failed: %s", res.name, res.why)
	}
	return nil
}

func printInstanceLoss(w, errw io.Writer, r *drill.InstanceLossReport) {
	fmt.Fprintf(w, "  requests %d, failed %d, p50 %.1f ms, p99 %.1f ms, max %.1f ms over %.0f s at %d/s\n",
		r.Requests, r.Failed, r.P50MS, r.P99MS, r.MaxMS, r.DurationS, r.Rate)
	for _, f := range r.Faults {
		fmt.Fprintf(w, "  %-6s %s (zone %s) at %.1fs: out of service after %.0f ms (bound %.0f ms), replaced by %s after %.0f ms\n",
			f.Kind, f.Instance, f.Zone, float64(f.AtMS)/1000, f.DetectMS, f.DetectBoundMS, f.Replacement, f.ReplaceMS)
	}
	fmt.Fprintf(w, "  fleet after: %d in service, %d healthy, desired %d\n", r.InService, r.HealthyEnd, r.Desired)
	for e, n := range r.Errors {
		fmt.Fprintf(errw, "  error x%d: %s\n", n, e)
	}
}

func newExamSpikeCmd(g *globals) *cobra.Command {
	var cfg drill.ExamSpikeConfig
	var wf workloadFlags
	var asJSON bool
	var reportFile, runs string
	cmd := &cobra.Command{
		Use:   "exam-spike",
		Short: "Meet a 10× step of logged-in load three times: reactive scaling, a scheduled pre-scale, scaling off (the control)",
		Long: `Start at min, hold a baseline, step (or ramp) to the peak, hold it, drop back, and
do it three times: with target tracking alone, with a scheduled pre-scale before the
step, and with scaling suspended (the control, which must break the SLO). Each run
reports the time from the step until p99 is back inside the SLO, errors,
instance-seconds against a fleet fixed at peak, and the time until the fleet is back
at min after the drop. The defaults are sized for the documented profile (docs/scaling.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.Workload, err = wf.build(); err != nil {
				return err
			}
			if runs != "" {
				cfg.Runs = strings.Split(runs, ",")
			}
			cfg.Log = cmd.ErrOrStderr()
			if isTerminal(cmd.ErrOrStderr()) {
				cfg.Progress = cmd.ErrOrStderr()
			}
			rep, err := drill.ExamSpike(cmd.Context(), g.client(), cfg)
			if rep != nil && reportFile != "" && len(rep.Runs) > 0 {
				if werr := report.WriteFile(reportFile, rep.HTML()); werr != nil {
					return werr
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s\n", reportFile)
			}
			if err != nil {
				return err
			}
			res := drillResult{name: "exam-spike", header: "exam-spike drill", pass: rep.Pass, reasons: rep.Reasons, why: strings.Join(rep.Reasons, "; "), save: g.client()}
			return finishDrill(cmd.OutOrStdout(), asJSON, rep, res, func(w io.Writer) { printExamSpike(w, rep) })
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Users, "users", 50, "seeded students to log in")
	f.Float64Var(&cfg.Base, "base", 40, "requests per second before and after the peak")
	f.Float64Var(&cfg.Peak, "peak", 400, "requests per second at the peak")
	f.DurationVar(&cfg.Baseline, "baseline", 60*time.Second, "how long the base rate runs before the step")
	f.DurationVar(&cfg.Ramp, "ramp", 30*time.Second, "reach the peak linearly over this long (0: a step)")
	f.DurationVar(&cfg.Hold, "hold", 120*time.Second, "how long the peak lasts, the ramp included")
	f.DurationVar(&cfg.After, "after", 180*time.Second, "how long the base rate runs after the drop")
	f.DurationVar(&cfg.SLOP99, "slo-p99", 500*time.Millisecond, "the p99 latency objective")
	f.Float64Var(&cfg.MaxErrorRate, "max-error-rate", 0.001, "the error objective, a fraction")
	f.DurationVar(&cfg.Window, "window", 0, "how long after the step the reactive run may break the SLO (default: derived from the scaler's period)")
	f.IntVar(&cfg.PreScale, "prescale", 0, "the min the pre-scale sets (default: the instances the reactive run had at the drop, or 6)")
	f.DurationVar(&cfg.PreScaleLead, "prescale-lead", 30*time.Second, "how long before the step the pre-scale runs")
	f.StringVar(&runs, "runs", "", "comma-separated runs: reactive, prescaled, off (default all three, in that order)")
	f.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "a request that takes longer counts as a timeout")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	f.StringVar(&reportFile, "report", "", "also write a self-contained HTML report to this file")
	wf.add(f)
	return cmd
}

func printExamSpike(w io.Writer, r *drill.ExamSpikeReport) {
	p := r.Profile
	fmt.Fprintf(w, "  profile: %g rps for %gs, then %g rps for %gs, then %g rps for %gs; SLO p99 %.0f ms, errors %.1f %%, window %.0f s after the step\n",
		p.BaseRPS, p.BaselineS, p.PeakRPS, p.HoldS, p.BaseRPS, p.AfterS, p.SLOP99MS, 100*p.MaxErrorRate, p.WindowS)
	fmt.Fprintf(w, "  machine: %d CPUs, load average %.2f before, %.2f after\n", r.Machine.CPUs, r.Machine.LoadAvgBefore, r.Machine.LoadAvgAfter)
	for _, run := range r.Runs {
		verdict := "PASS"
		if !run.Pass {
			verdict = "FAIL"
		}
		rec := "never left the SLO"
		switch {
		case run.RecoveryS == nil:
			rec = "not back in the SLO before the drop"
		case *run.RecoveryS > 0:
			rec = fmt.Sprintf("p99 back in the SLO %.0f s after the step", *run.RecoveryS)
		}
		back := "not back at min by the end"
		if run.BackAtMinS != nil {
			back = fmt.Sprintf("back at min %.0f s after the drop", *run.BackAtMinS)
		}
		fmt.Fprintf(w, "  %-9s %s: p99 %.0f ms outside the window (%.0f ms in it, %.0f ms at peak), %s; errors %d/%d (%.3f %%); instance-seconds %.0f vs %.0f fixed at peak %d (%.0f %%); %s\n",
			run.Name, verdict, run.P99OutsideWindowMS, run.P99WindowMS, run.P99HoldMS, rec, run.Failed, run.Requests, 100*run.ErrorRate,
			run.InstanceSeconds, run.FixedAtPeakInstanceSeconds, run.PeakInstances, 100*run.InstanceSecondsRatio, back)
		for _, a := range run.Activities {
			fmt.Fprintf(w, "      %s\n", a.Cause)
		}
	}
}

func newZoneLossCmd(g *globals) *cobra.Command {
	var cfg drill.ZoneLossConfig
	var wf workloadFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "zone-loss",
		Short: "Fail the zone of the database primary (power or partition) under logged-in load and ledger writers; restore it; report what users saw, the write RTO, the fleet's recovery and the rebalance",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Progress = cmd.ErrOrStderr()
			var err error
			if cfg.Workload, err = wf.build(); err != nil {
				return err
			}
			rep, err := drill.ZoneLoss(cmd.Context(), g.client(), cfg)
			if err != nil {
				return err
			}
			res := drillResult{name: "zone-loss", header: fmt.Sprintf("zone-loss drill (%s, %d rounds)", rep.Fault, rep.Rounds), pass: rep.Pass, reasons: rep.Reasons, why: fmt.Sprint(rep.Reasons), save: g.client()}
			return finishDrill(cmd.OutOrStdout(), asJSON, rep, res, func(w io.Writer) { printZoneLoss(w, rep) })
		},
	}
	cmd.Flags().StringVar(&cfg.Zone, "zone", "primary", "the zone to fail: a zone name, or primary (the database primary's zone, each round)")
	cmd.Flags().StringVar(&cfg.Fault, "fault", "power", "power (SIGKILL everything in the zone) or partition (its links drop every packet)")
	cmd.Flags().IntVar(&cfg.Rounds, "rounds", 1, "how many times to fail and restore a zone")
	cmd.Flags().IntVar(&cfg.Rate, "rate", 20, "web requests per second through the load balancer")
	cmd.Flags().IntVar(&cfg.Users, "users", 10, "seeded students to log in")
	cmd.Flags().IntVar(&cfg.Writers, "writers", 4, "ledger writers through the database endpoint")
	cmd.Flags().DurationVar(&cfg.Hold, "hold", 3*time.Second, "how long the zone stays failed once the database failed over and the fleet is back at desired")
	cmd.Flags().DurationVar(&cfg.WebWindow, "web-window", 5*time.Second, "the longest web requests may fail after the fault")
	wf.add(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func printZoneLoss(w io.Writer, r *drill.ZoneLossReport) {
	fmt.Fprintf(w, "  write RTO median %.0f ms, max %.0f ms; web errors ended within %.1f s of the fault (worst round); fleet back at desired %d outside the zone within %.1f s\n",
		r.WriteRTO.Median, r.WriteRTO.Max, r.ErrorFreeAfterMSMax/1000, r.Desired, r.FleetRecoveredMSMax/1000)
	fmt.Fprintf(w, "  after restore: zones rebalanced within %.1f s, synchronous standby within %.1f s\n", r.RebalancedMSMax/1000, r.HealedMSMax/1000)
	if r.Web != nil {
		fmt.Fprintf(w, "  web: %d requests, %d failed, p50 %.1f ms, p99 %.1f ms\n", r.Web.Requests, r.Web.Failed, r.Web.P50MS, r.Web.P99MS)
	}
	fmt.Fprintf(w, "  ledger: ok %d fail %d unknown %d, acknowledged lost %d, fail present %d; split-brain acks %d\n",
		r.OK, r.Fail, r.Unknown, r.AcknowledgedLost, r.FailPresent, r.SplitBrainAcks)
	fmt.Fprintf(w, "  end: primary %s (epoch %d), %d writable primaries, synchronous standby streaming %v\n", r.FinalPrimary, r.FinalEpoch, r.Primaries, r.SyncStandbyStreaming)
}

func newBadDeployCmd(g *globals) *cobra.Command {
	var cfg drill.BadDeployConfig
	var wf workloadFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "bad-deploy",
		Short: "Deploy a bad build (crash, unhealthy, errors, slow) under logged-in load: it must roll back by itself; then a good deploy",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Progress = cmd.ErrOrStderr()
			var err error
			if cfg.Workload, err = wf.build(); err != nil {
				return err
			}
			rep, err := drill.BadDeploy(cmd.Context(), g.client(), cfg)
			if err != nil {
				return err
			}
			res := drillResult{name: "bad-deploy", header: "bad-deploy drill (" + rep.Kind + ")", pass: rep.Pass, reasons: rep.Reasons, why: fmt.Sprint(rep.Reasons)}
			return finishDrill(cmd.OutOrStdout(), asJSON, rep, res, func(w io.Writer) {
				for _, p := range []drill.DeployPhase{rep.Bad, rep.Good} {
					fmt.Fprintf(w, "  %s %s -> %s: %s in %.1f s; %d requests, %d failed, %d over 1 s, p99 %.0f ms; in service >= %d (desired %d), zone skew <= %d\n",
						p.Rollout, p.From, p.Target, p.Phase, p.DurationS, p.Requests, p.Failed, p.Slow, p.P99MS, p.MinInService, rep.Desired, p.MaxZoneSkew)
					if p.Gate != "" {
						fmt.Fprintf(w, "    %s gate: %s\n", p.Gate, p.Reason)
					}
				}
				if rep.Bound > 0 {
					fmt.Fprintf(w, "  bound on bad requests: %d\n", rep.Bound)
				}
			})
		},
	}
	cmd.Flags().StringVar(&cfg.Kind, "kind", "crash", "the bad build: crash, unhealthy, errors or slow")
	cmd.Flags().IntVar(&cfg.Rate, "rate", 30, "requests per second")
	cmd.Flags().IntVar(&cfg.Users, "users", 20, "seeded students to log in")
	cmd.Flags().DurationVar(&cfg.Timeout, "timeout", 5*time.Minute, "the longest each rollout may take")
	wf.add(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}
