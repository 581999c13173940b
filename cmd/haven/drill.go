package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/haven-platform/haven/internal/drill"
)

func newDrillCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "drill", Short: "Prove a promise under load: lose an instance, fail the database over, ..."}
	cmd.AddCommand(newInstanceLossCmd(g), newDBFailoverDrillCmd(g), newPITRDrillCmd(g), newSecretRotationCmd(g))
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
			res := drillResult{name: "instance-loss", header: "instance-loss drill", pass: rep.Pass, reasons: rep.Reasons, why: fmt.Sprint(rep.Reasons)}
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
}

// finishDrill prints a drill's report, as JSON or as text (the header with
// the verdict, the drill's own lines from body, then the reasons), and
// fails with exit code 2 when the drill did not pass.
func finishDrill(w io.Writer, asJSON bool, rep any, res drillResult, body func(io.Writer)) error {
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
