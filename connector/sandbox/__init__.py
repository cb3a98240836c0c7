"""Simulators of Uppzy and the helpdesks, served over real HTTP on 127.0.0.1."""
