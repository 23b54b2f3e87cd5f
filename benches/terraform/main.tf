# The Terraform side of the benchmark (scripts/bench): every tenant of var.tenants gets
# modules/tenant, the same AWS resources tenantform's blueprint creates, on the same
# endpoint (a local moto_server by default). N tenants = N entries in var.tenants.
#
#   export TF_CLI_CONFIG_FILE=$PWD/offline.tfrc   # the provider from /opt/tf-plugins
#   terraform init
#   terraform apply -var-file=tenants.tfvars.json -var endpoint=$AWS_ENDPOINT_URL
#
# The PostgreSQL part of a tenant has no counterpart here (no offline PostgreSQL
# provider), so tenantform does strictly more work per tenant than this.

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "5.100.0"
    }
  }
}

variable "endpoint" {
  description = "AWS API endpoint for S3, IAM, STS and ElastiCache (moto_server)."
  type        = string
  default     = "http://127.0.0.1:5000"
}

variable "region" {
  type    = string
  default = "us-east-1"
}

variable "platform_tags" {
  type    = map(string)
  default = { ManagedBy = "tenantform", Platform = "rag-platform" }
}

variable "tenants" {
  description = "Tenant id => its tier settings."
  type = map(object({
    tier            = string
    cost_center     = string
    glacier_days    = number
    dedicated_cache = bool
    cache_node_type = optional(string, "cache.r6g.large")
    cache_nodes     = optional(number, 1)
    # An older setup's names (see modules/tenant); null: the blueprint's.
    bucket_name           = optional(string)
    iam_policy_name       = optional(string)
    role_description      = optional(string)
    lifecycle_rule_id     = optional(string, "tiering")
    deny_other_principals = optional(bool, true)
  }))
  default = {}
}

provider "aws" {
  region                      = var.region
  s3_use_path_style           = true
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  endpoints {
    s3          = var.endpoint
    iam         = var.endpoint
    sts         = var.endpoint
    elasticache = var.endpoint
  }
}

module "tenant" {
  source   = "./modules/tenant"
  for_each = var.tenants

  id              = each.key
  tier            = each.value.tier
  cost_center     = each.value.cost_center
  glacier_days    = each.value.glacier_days
  dedicated_cache = each.value.dedicated_cache
  cache_node_type = each.value.cache_node_type
  cache_nodes     = each.value.cache_nodes
  platform_tags   = var.platform_tags

  bucket_name           = each.value.bucket_name
  iam_policy_name       = each.value.iam_policy_name
  role_description      = each.value.role_description
  lifecycle_rule_id     = each.value.lifecycle_rule_id
  deny_other_principals = each.value.deny_other_principals
}
