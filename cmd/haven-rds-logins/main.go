// Command haven-rds-logins is the AWS module's db-logins Lambda function
// (runtime provided.al2023): at deploy it creates the app's database roles
// and its secret's first value; then Secrets Manager calls it to rotate that
// secret with alternating users. Its configuration comes from the HAVEN_*
// environment variables the module sets; see internal/rdslogins.
//
// Build it for the function's architecture and zip it as "bootstrap":
//
//	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 go build -o bootstrap ./cmd/haven-rds-logins
//	zip rds-logins.zip bootstrap
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/haven-platform/haven/internal/lambdaruntime"
	"github.com/haven-platform/haven/internal/rdslogins"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "haven-rds-logins:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	api := os.Getenv("AWS_LAMBDA_RUNTIME_API")
	cfg, err := rdslogins.ConfigFromEnv(os.Getenv)
	if err != nil {
		return lambdaruntime.InitError(ctx, api, err)
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return lambdaruntime.InitError(ctx, api, fmt.Errorf("load AWS configuration: %w", err))
	}
	svc, err := rdslogins.New(cfg, secretsmanager.NewFromConfig(awsCfg), log)
	if err != nil {
		return lambdaruntime.InitError(ctx, api, err)
	}
	return lambdaruntime.Serve(ctx, api, svc.Handle, log)
}
