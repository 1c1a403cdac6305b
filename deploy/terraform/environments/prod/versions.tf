terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # Pinned to a patch range; commit .terraform.lock.hcl after `init`.
      version = "~> 6.20.0"
    }
  }

  # Partial configuration: `terraform init -backend-config=backend.hcl`
  # (copy backend.hcl.example).
  backend "s3" {}
}
