package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/haven-platform/haven/internal/posture"
	"github.com/haven-platform/haven/internal/spec"
	"github.com/haven-platform/haven/internal/tfvars"
)

func newAWSCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "aws", Short: "Deploy the same spec to AWS with the Terraform module in deploy/terraform"}
	var out string
	var asJSON bool
	tf := &cobra.Command{
		Use:   "tfvars",
		Short: "Map the spec onto the Terraform module's variables, clamping to AWS's ranges with a warning",
		Long: `Map the spec onto the Terraform module's variables (deploy/terraform).

Every field of haven.yaml is exported, or warned about, or local only by design
(docs/spec.md says which). A value outside AWS's range is clamped with a warning
naming the field; a field the module cannot deploy yet is named in a warning when
the spec sets it.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := spec.LoadFile(g.specFile)
			if err != nil {
				return err
			}
			vars, warns, err := tfvars.GenerateSpec(s)
			if err != nil {
				return fmt.Errorf("generate tfvars from %s: %w", g.specFile, err)
			}
			data, err := vars.JSON()
			if err != nil {
				return err
			}
			type warning struct {
				Field    string `json:"field"`
				Variable string `json:"variable"`
				From     string `json:"from"`
				To       string `json:"to"`
				Reason   string `json:"reason"`
			}
			var ws []warning
			for _, w := range warns {
				ws = append(ws, warning{w.Field, w.Variable, w.From, w.To, w.Reason})
				if !asJSON {
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", w)
				}
			}
			if out != "" && out != "-" {
				if err := os.WriteFile(out, data, 0o644); err != nil {
					return fmt.Errorf("write %s: %w", out, err)
				}
				if !asJSON {
					fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s (%d warnings); next: terraform -chdir=deploy/terraform/examples/courses plan -var-file=%s\n", out, len(ws), out)
				}
			} else if !asJSON {
				_, err = cmd.OutOrStdout().Write(data)
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"file": out, "warnings": ws})
			}
			return nil
		},
	}
	addSpecFlag(tf, g)
	tf.Flags().StringVarP(&out, "output", "o", "", "write the tfvars JSON to this file (default: stdout)")
	tf.Flags().BoolVar(&asJSON, "json", false, "print the warnings as JSON (with -o)")
	cmd.AddCommand(tf)
	return cmd
}

func newAuditCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Check posture: a Terraform plan, or the region for plaintext secrets"}
	var asJSON bool
	plan := &cobra.Command{
		Use:   "plan PLAN.json",
		Short: "Audit `terraform show -json` output for insecure AWS configuration; exits non-zero on a high-severity finding",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("read plan: %w (make one with: terraform plan -out tfplan && terraform show -json tfplan > %s)", err, args[0])
			}
			findings, err := posture.Audit(data)
			if err != nil {
				return fmt.Errorf("audit %s: %w", args[0], err)
			}
			if asJSON {
				if findings == nil {
					findings = []posture.Finding{}
				}
				if err := writeJSON(cmd.OutOrStdout(), findings); err != nil {
					return err
				}
			} else if err := posture.Render(cmd.OutOrStdout(), findings); err != nil {
				return err
			}
			if posture.HasHigh(findings) {
				return errorf(3, "audit plan: high-severity findings in %s", args[0])
			}
			return nil
		},
	}
	plan.Flags().BoolVar(&asJSON, "json", false, "print findings as JSON")
	cmd.AddCommand(plan, newAuditSecretsCmd(g))
	return cmd
}
