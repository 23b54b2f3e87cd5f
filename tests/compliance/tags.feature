Feature: Every bucket can be charged back to its tenant
  Cost reports group spend by the TenantID tag, so a bucket without it is
  spend that nobody owns.

  Scenario: Every documents bucket carries the TenantID tag
    Given I have s3_bucket defined
    Then it must contain tags
    And it must contain TenantID
