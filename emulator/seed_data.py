"""The seeded directory population: people, groups and registered clients.

Plain data, so a reader sees at a glance who exists in a fresh emulator tenant. A few names carry
an apostrophe or non-ASCII letters on purpose: they exercise OData ``''`` escaping and Unicode
filters end to end.
"""

from __future__ import annotations

DOMAIN = "contoso-emulator.onmicrosoft.com"

# (givenName, surname, jobTitle, department)
PEOPLE: list[tuple[str, str, str, str]] = [
    ("Adele", "Vance", "Retail Manager", "Retail"),
    ("Alex", "Wilber", "Marketing Assistant", "Marketing"),
    ("Allan", "Deyoung", "IT Admin", "IT"),
    ("Christie", "Cline", "Buyer", "Sales"),
    ("Debra", "Berger", "Administrative Assistant", "Executive Management"),
    ("Diego", "Siciliani", "HR Manager", "HR"),
    ("Emily", "Braun", "Budget Analyst", "Finance"),
    ("Enrico", "Cattaneo", "Attorney", "Legal"),
    ("Grady", "Archie", "Designer", "R&D"),
    ("Henrietta", "Mueller", "Developer", "R&D"),
    ("Irvin", "Sayers", "Director", "R&D"),
    ("Isaiah", "Langer", "Sales Rep", "Sales"),
    ("Johanna", "Lorenz", "Senior Engineer", "Engineering"),
    ("Joni", "Sherman", "Paralegal", "Legal"),
    ("Lee", "Gu", "Director", "Manufacturing"),
    ("Lidia", "Holloway", "Product Manager", "Engineering"),
    ("Lynne", "Robbins", "Planner", "Retail"),
    ("Megan", "Bowen", "Marketing Manager", "Marketing"),
    ("Miriam", "Graham", "Director", "Sales"),
    ("Nestor", "Wilke", "Director", "Operations"),
    ("Patti", "Fernandez", "President", "Executive Management"),
    ("Pradeep", "Gupta", "Accountant", "Finance"),
    ("Sean", "O'Brien", "Site Reliability Engineer", "Engineering"),
    ("Zoë", "Ångström", "Data Scientist", "R&D"),
    ("Søren", "Kierkegaard", "Philosopher in Residence", "HR"),
    ("Hana", "Kobayashi", "Support Engineer", "Operations"),
    ("Amara", "Okafor", "Security Analyst", "IT"),
    ("Mateo", "García", "Sales Rep", "Sales"),
    ("Priya", "Raman", "Engineer", "Engineering"),
    ("Tomasz", "Nowak", "Engineer", "Engineering"),
    ("Disabled", "Account", "Former Employee", "HR"),
]

# (displayName, description, member selector): members are people whose department is listed,
# plus nested group names prefixed with "group:" (members of nested groups are not provisioned:
# https://learn.microsoft.com/entra/identity/app-provisioning/how-provisioning-works; that is why one
# group nests another).
GROUPS: list[tuple[str, str, list[str]]] = [
    ("Engineering", "All engineers", ["Engineering", "R&D"]),
    ("Sales", "Sales organisation", ["Sales", "Retail"]),
    ("Finance & Legal", "Finance and legal staff", ["Finance", "Legal"]),
    ("IT Operations", "IT and operations", ["IT", "Operations"]),
    ("AWS Admins", "People with AWS console access", ["IT"]),
    ("SaaS Pilot", "Pilot users for new SaaS apps", ["Marketing", "HR"]),
    ("All Staff (nested)", "Contains other groups only", ["group:Engineering", "group:Sales"]),
    ("Empty Group", "No members", []),
]
