"""Reading: the sources manifest (files and hub datasets) and the readers that turn any source's rows into
records.
"""
