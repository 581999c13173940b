# How an instance boots and runs the app: cloud-init user data that fetches
# the binary, writes the environment file, the systemd unit and the boot
# script that writes the instance's own values, then starts the unit. Pure
# (no resources), so tests render it with known inputs; the parent module
# gives user_data to the launch template.
#
# The app sees what haven's fleet gives it locally (internal/fleet): the
# environment, then HOST (the instance's address), PORT, HAVEN_INSTANCE_ID
# and HAVEN_ZONE, which nothing overrides; in its arguments only ${HOST},
# ${PORT}, ${INSTANCE_ID} and ${ZONE} are expanded.

variable "name" {
  description = "Name of the deployment: the program is /usr/local/bin/<name>, the files are under /etc/<name>."
  type        = string
}

variable "region" {
  description = "AWS region of the artifacts bucket."
  type        = string
}

variable "artifacts_bucket" {
  description = "Bucket holding the app binary."
  type        = string
}

variable "artifact_key" {
  description = "Key of the app binary in artifacts_bucket."
  type        = string
}

variable "command" {
  description = "Arguments of the program (haven.yaml `app.command` without the program)."
  type        = list(string)
}

variable "environment" {
  description = "The app's environment, without HOST, HAVEN_INSTANCE_ID and HAVEN_ZONE (the boot script writes those)."
  type        = map(string)
}

locals {
  # systemd reads a double-quoted value of an environment file as POSIX
  # shell does: a backslash keeps \ " $ and ` literal, and a value may span
  # lines. So every value reaches the app exactly as given.
  env_file = join("", [
    for k in sort(keys(var.environment)) :
    format("%s=\"%s\"\n", k, replace(replace(replace(replace(var.environment[k], "\\", "\\\\"), "\"", "\\\""), "$", "\\$"), "`", "\\`"))
  ])

  # systemd expands $VAR, ${VAR} and %-specifiers in ExecStart; haven
  # expands only its four tokens. Protect the tokens, escape every other $
  # and %, then give the tokens back as systemd variables of the same
  # meaning.
  exec_args = [
    for a in var.command : replace(replace(replace(replace(
      replace(replace(
        replace(replace(replace(replace(a, "$${HOST}", "\u0001H"), "$${PORT}", "\u0001P"), "$${INSTANCE_ID}", "\u0001I"), "$${ZONE}", "\u0001Z"),
      "%", "%%"), "$", "$$"),
    "\u0001H", "$${HOST}"), "\u0001P", "$${PORT}"), "\u0001I", "$${HAVEN_INSTANCE_ID}"), "\u0001Z", "$${HAVEN_ZONE}")
  ]

  unit = <<-UNIT
    [Unit]
    Description=${var.name} app
    Wants=network-online.target
    After=network-online.target

    [Service]
    DynamicUser=yes
    EnvironmentFile=/etc/${var.name}/env
    EnvironmentFile=/etc/${var.name}/instance.env
    ExecStart=/usr/local/bin/${var.name}${join("", [for a in local.exec_args : format(" %q", a)])}
    Restart=always
    RestartSec=2
    NoNewPrivileges=yes
    ProtectSystem=strict
    ProtectHome=yes
    PrivateTmp=yes

    [Install]
    WantedBy=multi-user.target
  UNIT

  # Run once at boot, before the unit starts, with the file to write as $1.
  # IMDSv2 only; AWS_EC2_METADATA_SERVICE_ENDPOINT (the SDK's variable)
  # overrides the endpoint, which is how the tests run it against haven's.
  instance_env_script = <<-SCRIPT
    #!/bin/sh
    # Writes the instance's own values for the app, as haven's fleet gives them
    # locally: HOST (the instance's private address, where the app listens),
    # HAVEN_INSTANCE_ID, and HAVEN_ZONE (the zone letter: eu-west-1a is a).
    set -eu
    out=$1
    imds=$${AWS_EC2_METADATA_SERVICE_ENDPOINT:-http://169.254.169.254/}
    imds=$${imds%/}
    token=$(curl -fsS --retry 5 --retry-connrefused -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' "$imds/latest/api/token")
    get() { curl -fsS --retry 5 -H "X-aws-ec2-metadata-token: $token" "$imds/latest/meta-data/$1"; }
    host=$(get local-ipv4)
    id=$(get instance-id)
    az=$(get placement/availability-zone)
    region=$(get placement/region)
    umask 022
    printf 'HOST=%s\nHAVEN_INSTANCE_ID=%s\nHAVEN_ZONE=%s\n' "$host" "$id" "$${az#"$region"}" > "$out.tmp"
    mv "$out.tmp" "$out"
  SCRIPT
}

locals {
  cloud_config = {
    write_files = [
      { path = "/etc/${var.name}/env", permissions = "0644", content = local.env_file },
      { path = "/etc/systemd/system/${var.name}.service", permissions = "0644", content = local.unit },
      { path = "/usr/local/libexec/${var.name}-instance-env", permissions = "0755", content = local.instance_env_script },
    ]
    runcmd = [
      ["aws", "s3", "cp", "--region", var.region, "s3://${var.artifacts_bucket}/${var.artifact_key}", "/usr/local/bin/${var.name}"],
      ["chmod", "0755", "/usr/local/bin/${var.name}"],
      ["/usr/local/libexec/${var.name}-instance-env", "/etc/${var.name}/instance.env"],
      ["systemctl", "daemon-reload"],
      ["systemctl", "enable", "--now", "${var.name}.service"],
    ]
  }
}

output "user_data" {
  description = "The cloud-init user data of an app instance."
  value       = "#cloud-config\n${yamlencode(local.cloud_config)}"
}

output "env_file" {
  description = "Content of /etc/<name>/env."
  value       = local.env_file
}

output "unit" {
  description = "Content of /etc/systemd/system/<name>.service."
  value       = local.unit
}

output "instance_env_script" {
  description = "The boot script that writes /etc/<name>/instance.env (HOST, HAVEN_INSTANCE_ID, HAVEN_ZONE) from instance metadata."
  value       = local.instance_env_script
}
