"""Airflow hooks for Truto."""
