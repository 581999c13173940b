package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/haven-platform/haven/internal/api"
	"github.com/haven-platform/haven/internal/termsafe"
)

// globals are the flags every command shares.
type globals struct {
	stateDir string
	specFile string
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "haven",
		Short: "haven runs a highly available web app: locally as a real region, on AWS with Terraform",
		Long: `haven runs the "highly available web app on AWS" reference architecture.

  haven up        bring up the local region (two zones, load balancer, fleet, database)
  haven status    show it
  haven drill     prove a promise with numbers
  haven load      drive logged-in load and record each second
  haven down      stop it

One haven.yaml drives both the local region and the Terraform module (haven aws tfvars).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Everything a command prints may carry text from the daemon, an
		// instance or a client of the region's APIs: no control character
		// reaches the terminal raw (JSON stays valid JSON, see writeJSON).
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			r := cmd.Root()
			r.SetOut(termsafe.Writer(r.OutOrStdout()))
			r.SetErr(termsafe.Writer(r.ErrOrStderr()))
		},
	}
	root.PersistentFlags().StringVar(&g.stateDir, "state-dir", "", "region state directory (env HAVEN_STATE_DIR; default ./.haven)")
	root.AddCommand(
		newInitCmd(),
		newValidateCmd(g),
		newUpCmd(g),
		newDaemonCmd(g),
		newLBCmd(),
		newEndpointCmd(),
		newVersionCmd(),
		newDownCmd(g),
		newStatusCmd(g),
		newPlanCmd(g),
		newApplyCmd(g),
		newInstanceCmd(g),
		newZoneCmd(g),
		newFleetCmd(g),
		newDeployCmd(g),
		newDrillCmd(g),
		newLoadCmd(g),
		newDBCmd(g),
		newEventsCmd(g),
		newAWSCmd(g),
		newAuditCmd(g),
		newSecretsCmd(g),
		newEdgeCmd(g),
		newObjStoreCmd(),
		newAlarmsCmd(g),
		newLogsCmd(g),
		newConsoleCmd(g),
		newVersionCmd(),
		newIdentityCmd(g),
	)
	return root
}

// dir returns the absolute state directory from the flag, the environment or the default.
func (g *globals) dir() string {
	d := g.stateDir
	if d == "" {
		d = os.Getenv("HAVEN_STATE_DIR")
	}
	if d == "" {
		d = ".haven"
	}
	if abs, err := filepath.Abs(d); err == nil {
		d = abs
	}
	return d
}

func (g *globals) client() *api.Client { return api.NewClient(g.dir()) }

func addSpecFlag(cmd *cobra.Command, g *globals) {
	cmd.Flags().StringVarP(&g.specFile, "file", "f", "haven.yaml", "spec file")
}

// writeJSON prints v as indented JSON, with the runes encoding/json
// leaves raw that a terminal would act on escaped (termsafe.JSON).
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = w.Write(append(termsafe.JSON(b), '\n'))
	return err
}

func errorf(code int, format string, a ...any) error {
	return &exitError{code: code, msg: fmt.Sprintf(format, a...)}
}
