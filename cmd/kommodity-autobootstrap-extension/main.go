// Command kommodity-autobootstrap-extension is the daemon Talos runs as the
// ext-kommodity-autobootstrap service on every node.
//
// `kommodity-autobootstrap-extension status` is the operator's view from a
// workstation instead: see statusCommand. `--version` prints the version.
//
// Exit codes: 0 when this node is part of a healthy etcd cluster, is a
// worker, or stood down because Omni bootstraps its cluster; 2 for an
// invalid configuration; 1 for any other failure. Talos's restart policy
// untilSuccess restarts it after a non-zero exit.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/cmd/internal/config"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/cmd/internal/daemon"
)

// version is stamped by the Makefile (-ldflags -X main.version=...): the
// extension's version, the one in its manifest and its image tag.
var version = "dev"

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "--version" || os.Args[1] == "-version") {
		fmt.Println(version)

		return
	}

	if len(os.Args) > 1 && os.Args[1] == "status" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		code := statusCommand(ctx, os.Args[2:], os.Getenv, os.Stdout, os.Stderr)

		stop()
		os.Exit(code)
	}

	os.Exit(run())
}

func run() int {
	// Signals first: a SIGTERM that arrives while the configuration is read
	// must end the run as "stopped", not kill the process mid-write.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// The upstream README's log format: {"level":"info","msg":"..."}.
	zerolog.MessageFieldName = "msg"
	log := zerolog.New(os.Stdout).With().Timestamp().Logger()
	log.Info().Str("version", version).Msg("starting kommodity-autobootstrap-extension")

	cfg, err := config.FromEnvironment()
	if err != nil {
		var invalid *config.InvalidError
		if errors.As(err, &invalid) {
			log.Error().Str("variable", invalid.Variable).Str("value", invalid.Value).Err(err).Msg("invalid configuration")

			return 2
		}

		log.Error().Err(err).Msg("invalid configuration")

		return 2
	}

	log = log.Level(cfg.LogLevel)

	if err := daemon.Run(ctx, cfg, daemon.Options{Log: log}); err != nil {
		if ctx.Err() != nil {
			log.Warn().Msg("stopped by signal before completion")

			return 1
		}

		log.Error().Err(err).Msg("bootstrap service failed")

		if config.IsInvalid(err) {
			return 2
		}

		return 1
	}

	log.Info().Msg("bootstrap service completed successfully")

	return 0
}
