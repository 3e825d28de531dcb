variable "name" {
  description = "Name prefix of every resource."
  type        = string
}

variable "cidr_block" {
  description = "The VPC's address range."
  type        = string
}

variable "availability_zone_count" {
  description = "How many availability zones to spread subnets over (MSK needs one broker per zone)."
  type        = number
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all zones (cheaper) instead of one per zone (survives a zone outage)."
  type        = bool
}
