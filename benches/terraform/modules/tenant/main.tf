# One tenant's AWS part, resource for resource what tenantform's blueprint
# (src/blueprint/aws.rs) creates: the documents bucket with versioning, lifecycle,
# public access block and a policy that admits only the tenant's role; an IAM policy
# scoped to the bucket; the tenant's application role with the policy attached; and,
# for tiers with a dedicated cache (Gold), an ElastiCache Redis cluster.

terraform {
  required_providers {
    aws = {
      source = "hashicorp/aws"
    }
  }
}

variable "id" {
  description = "Tenant id (lowercase letters, digits, hyphens)."
  type        = string
}

variable "tier" {
  description = "Display name of the tier: Gold, Silver or Bronze."
  type        = string
}

variable "cost_center" {
  type = string
}

variable "glacier_days" {
  description = "Days after upload before objects move to Glacier (the tier's s3_glacier_days)."
  type        = number
}

variable "dedicated_cache" {
  type    = bool
  default = false
}

variable "cache_node_type" {
  type    = string
  default = "cache.r6g.large"
}

variable "cache_nodes" {
  type    = number
  default = 1
}

variable "platform_tags" {
  type    = map(string)
  default = {}
}

# Names and details that an older setup had otherwise (tests/adopt.rs adopts tenants
# made with them); null keeps the names tenantform's blueprint gives.
variable "bucket_name" {
  type    = string
  default = null
}

variable "iam_policy_name" {
  type    = string
  default = null
}

variable "role_description" {
  type    = string
  default = null
}

variable "lifecycle_rule_id" {
  type    = string
  default = "tiering"
}

variable "deny_other_principals" {
  description = "Whether the bucket policy denies object access to every other principal (moto applies such a Deny to every caller)."
  type        = bool
  default     = true
}

variable "service_principal" {
  description = "Who may assume the tenant's application role."
  type        = string
  default     = "ecs-tasks.amazonaws.com"
}

locals {
  bucket = coalesce(var.bucket_name, "rag-${var.id}-documents")
  tags = merge(var.platform_tags, {
    TenantID   = var.id
    Tier       = var.tier
    CostCenter = var.cost_center
  })
  object_actions = ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
  # S3 wants 30 days in Standard-IA before Glacier, so that step exists only when
  # Glacier comes 60 days or more after upload (as in the blueprint).
  standard_ia = var.glacier_days >= 60 ? [30] : []
}

resource "aws_s3_bucket" "documents" {
  bucket = local.bucket
  tags   = local.tags
}

resource "aws_s3_bucket_versioning" "documents" {
  bucket = aws_s3_bucket.documents.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "documents" {
  bucket = aws_s3_bucket.documents.id
  rule {
    id     = var.lifecycle_rule_id
    status = "Enabled"
    filter {
      prefix = ""
    }
    dynamic "transition" {
      for_each = local.standard_ia
      content {
        days          = transition.value
        storage_class = "STANDARD_IA"
      }
    }
    transition {
      days          = var.glacier_days
      storage_class = "GLACIER"
    }
  }
}

resource "aws_s3_bucket_public_access_block" "documents" {
  bucket                  = aws_s3_bucket.documents.id
  block_public_acls       = true
  ignore_public_acls      = true
  block_public_policy     = true
  restrict_public_buckets = true
}

resource "aws_iam_policy" "documents_access" {
  name        = coalesce(var.iam_policy_name, "rag-${var.id}-documents-access")
  description = "Access of tenant ${var.id} to its documents bucket"
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      { Sid = "ListBucket", Effect = "Allow", Action = ["s3:ListBucket"], Resource = [aws_s3_bucket.documents.arn] },
      { Sid = "ObjectAccess", Effect = "Allow", Action = local.object_actions, Resource = ["${aws_s3_bucket.documents.arn}/*"] },
    ]
  })
  tags = local.tags
}

resource "aws_iam_role" "app" {
  name        = "rag-${var.id}-app"
  description = coalesce(var.role_description, "Application role of tenant ${var.id}")
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = var.service_principal }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = local.tags
}

resource "aws_iam_role_policy_attachment" "documents_access" {
  role       = aws_iam_role.app.name
  policy_arn = aws_iam_policy.documents_access.arn
}

resource "aws_s3_bucket_policy" "documents" {
  bucket = aws_s3_bucket.documents.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat([
      {
        Sid       = "TenantRoleAccess"
        Effect    = "Allow"
        Principal = { AWS = aws_iam_role.app.arn }
        Action    = ["s3:ListBucket"]
        Resource  = [aws_s3_bucket.documents.arn]
      },
      {
        Sid       = "TenantRoleObjects"
        Effect    = "Allow"
        Principal = { AWS = aws_iam_role.app.arn }
        Action    = local.object_actions
        Resource  = ["${aws_s3_bucket.documents.arn}/*"]
      },
      ], var.deny_other_principals ? [
      {
        Sid       = "DenyOtherPrincipals"
        Effect    = "Deny"
        Principal = "*"
        Action    = local.object_actions
        Resource  = ["${aws_s3_bucket.documents.arn}/*"]
        Condition = { StringNotEquals = { "aws:PrincipalArn" = [aws_iam_role.app.arn] } }
      },
    ] : [])
  })
  # As in the blueprint: the policy goes on after the public access block is set.
  depends_on = [aws_s3_bucket_public_access_block.documents]
}

resource "aws_elasticache_cluster" "cache" {
  count           = var.dedicated_cache ? 1 : 0
  cluster_id      = "rag-${var.id}"
  engine          = "redis"
  engine_version  = "7.1"
  node_type       = var.cache_node_type
  num_cache_nodes = var.cache_nodes
  tags            = local.tags
}

output "bucket" {
  value = aws_s3_bucket.documents.id
}

output "role_arn" {
  value = aws_iam_role.app.arn
}
