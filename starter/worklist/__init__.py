"""The worklist page (`/worklist`): a clinician's and their unit's tasks, in bokmål or
nynorsk, for those without an EPJ integration (issue 30). Served by the API; plain HTML
forms, no single-page framework; every read and step goes through the API's own functions.
"""
