variable "name" {
  description = "Prefix of the bucket names (bucket names are global: include the account or organisation)."
  type        = string
}

variable "media_expire_days" {
  description = "Raw scraped media is deleted this many days after upload; faces, crops and sightings stay."
  type        = number
}

variable "checkpoint_expire_days" {
  description = "Flink checkpoints and savepoints older than this are deleted."
  type        = number
}
