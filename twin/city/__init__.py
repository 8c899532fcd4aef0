"""The city deployment (issue 19, docs/city-deployment.md): the city manifest and its districts, and the city
tier above the district twins."""
