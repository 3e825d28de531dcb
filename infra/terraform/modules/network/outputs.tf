output "vpc_id" {
  description = "The VPC's id."
  value       = aws_vpc.this.id
}

output "vpc_cidr_block" {
  description = "The VPC's address range."
  value       = aws_vpc.this.cidr_block
}

output "private_subnet_ids" {
  description = "One private subnet per availability zone: nodes, brokers and the database live here."
  value       = aws_subnet.private[*].id
}

output "public_subnet_ids" {
  description = "One public subnet per availability zone: NAT gateways and internet-facing load balancers."
  value       = aws_subnet.public[*].id
}
