"""Many trials at once: a patient's ranked trial list (scoring), a trial's feasibility funnel,
the work list of data that would settle `unknown`s, and the coordinator's report built on them.

Everything here reads PatientResults (fresh from a screen or from the store) and mappings; it
never fetches data, so a report can always be recomputed from what the store holds.
"""
