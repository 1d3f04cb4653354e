"""FHIR R4 in and out: referrals as ServiceRequest, pathways as a Bundle."""
