"""squads"""
