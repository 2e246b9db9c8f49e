"""glee.export"""
